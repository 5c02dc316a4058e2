"""Tables of the bulk job engine (the job itself is a ``BulkJob`` record; these hold its uploads and progress).

They live on their own ``MetaData`` and are created by the bulk service on first use, so the storage layer knows
nothing about bulk jobs.

- ``keel_bulk_upload``: one row per uploaded CSV batch. The CSV itself is a file under ``data_dir/bulk`` that was
  written and fsync'ed before this row committed, and before the client got its 201. ``rows_done`` is the
  progress marker: the worker advances it in the same transaction that writes a chunk's records and results, so a
  crash either keeps all three or none.
- ``keel_bulk_chunk``: the per-row outcome of one processed chunk, packed in one value (an insert per chunk, not
  per row). Result files are produced on request by zipping these with the uploaded CSV.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

bulk = sa.MetaData()

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")

uploads = sa.Table(
    "keel_bulk_upload", bulk,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.BigInteger, nullable=False),  # BulkJob integer pk
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(10), nullable=False, default="csv"),  # csv | query
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False, default=0),
    sa.Column("state", sa.String(20), nullable=False, default="Queued"),  # Queued InProgress Completed Failed
    sa.Column("state_message", sa.Text),
    sa.Column("rows_done", sa.BigInteger, nullable=False, default=0),
    sa.Column("rows_failed", sa.BigInteger, nullable=False, default=0),
    sa.Column("result_path", sa.Text),  # materialised query results
    sa.Column("result_rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_date", sa.DateTime, nullable=False),
    sa.Column("done_date", sa.DateTime),
    sa.UniqueConstraint("job_id", "seq"),
)

chunks = sa.Table(
    "keel_bulk_chunk", bulk,
    sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
    sa.Column("upload_id", sa.BigInteger, nullable=False),
    sa.Column("first_row", sa.BigInteger, nullable=False),  # 0-based data row within the upload
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("results", sa.LargeBinary, nullable=False),  # orjson: [[id18|null, created|error-text], ...]
    sa.UniqueConstraint("upload_id", "first_row"),
)


def create_bulk_tables(conn: Connection) -> None:
    bulk.create_all(conn, checkfirst=True)
