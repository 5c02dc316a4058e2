"""Query jobs: run SOQL through the engine's keyset cursors and materialise the results to a file, page by page.

Memory stays flat: one SOQL page (2,000 records) is held at a time. The CSV file is written with an index of the
byte offset of every 1,000th row, so a results page (``locator`` = row number) is served by seeking, and pages
on 1,000-row boundaries are copied as raw bytes without parsing. Results are a snapshot taken when the job runs,
like Salesforce's, and stay until the retention period ends.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from keel.context import Context
from keel.services import bulk as B
from keel.services import bulk_tables as T

INDEX_EVERY = 1000
_Q = struct.Struct("<Q")


def flatten(record: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Shaped record -> dotted columns (``Account.Name``); a null parent leaves its columns absent."""
    out = {} if out is None else out
    for k, v in record.items():
        if k == "attributes":
            continue
        if isinstance(v, dict) and "attributes" in v:
            flatten(v, f"{prefix}{k}.", out)
        elif isinstance(v, dict) and "records" in v:
            out[f"{prefix}{k}"] = orjson.dumps(v["records"]).decode()
        else:
            out[f"{prefix}{k}"] = v
    return out


def text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def soql_columns(soql: str) -> list[str] | None:
    """Dotted columns of the select list, or None when it has anything but plain field paths and aggregates."""
    from keel.query import ast as A
    from keel.query import parse

    q = parse(soql)
    names = {q.from_.lower(), (q.alias or "").lower()}
    cols: list[str] = []
    n = 0
    for item in q.select:
        if not isinstance(item, A.SelectExpr):
            return None
        e = item.expr
        if isinstance(e, A.FieldRef):
            path = list(e.path)
            if len(path) > 1 and path[0].lower() in names:
                path = path[1:]
            cols.append(item.alias or ".".join(path))
        elif isinstance(e, A.Call):  # only unaliased aggregates are numbered, as in Salesforce
            cols.append(item.alias or f"expr{n}")
            if item.alias is None:
                n += 1
        else:
            return None
    return cols


def _pages(ctx: Context, soql: str, query_all: bool) -> Iterator[list[dict[str, Any]]]:
    """SOQL pages as the acting user. Each page runs in a short write transaction because the engine saves its
    keyset cursor, and a SQLite read transaction cannot always upgrade to a write (the REST path does the same)."""
    from keel.services.query import query, query_more

    with ctx.db.transaction() as conn:
        page = query(ctx, soql, query_all=query_all, batch_size=2000, conn=conn, surface="bulk_query")
    while True:
        yield page["records"]
        nxt = page.get("nextRecordsUrl")
        if page.get("done", True) or not nxt:
            return
        with ctx.db.transaction() as conn:
            page = query_more(ctx, str(nxt).rsplit("/", 1)[-1], conn=conn, surface="bulk_query")


class CsvResultWriter:
    """Writes result rows and the row-offset index; ``close`` fsyncs both."""

    def __init__(self, path: Path, sep: str, eol: str) -> None:
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115
        self._idx = open(str(path) + ".idx", "wb")  # noqa: SIM115
        self._buf = io.StringIO()
        self._w = csv.writer(self._buf, delimiter=sep, lineterminator=eol, quoting=csv.QUOTE_ALL)
        self.rows = 0
        self.offset = 0

    def _emit(self) -> None:
        data = self._buf.getvalue().encode()
        self._buf.seek(0)
        self._buf.truncate()
        self._f.write(data)
        self.offset += len(data)

    def header(self, cols: list[str]) -> None:
        self._w.writerow(cols)
        self._emit()

    def rows_of(self, rows: Sequence[Sequence[Any]]) -> None:
        """Write rows in runs that end on the index boundaries, so the csv writer takes a run at a time."""
        i, n = 0, len(rows)
        while i < n:
            if self.rows % INDEX_EVERY == 0:
                self._emit()
                self._idx.write(_Q.pack(self.offset))
            take = min(n - i, INDEX_EVERY - self.rows % INDEX_EVERY)
            self._w.writerows(rows[i:i + take])
            self.rows += take
            i += take
        self._emit()

    def close(self) -> None:
        for f in (self._f, self._idx):
            f.flush()
            os.fsync(f.fileno())
            f.close()


def column_paths(cols: list[str], records: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Each column as a key path with the record's own casing (``vendor__r.name`` -> ``("Vendor__r", "Name")``),
    found in the first records that have it; resolved once per job, not per row."""
    out: list[tuple[str, ...]] = []
    for c in cols:
        parts = c.split(".")
        found: tuple[str, ...] | None = None
        for rec in records[:500]:
            cur: Any = rec
            path: list[str] = []
            for part in parts:
                low = part.lower()
                key = next((k for k in cur if k.lower() == low), None) if isinstance(cur, dict) else None
                if key is None:
                    break
                path.append(key)
                cur = cur[key]
            if len(path) == len(parts):
                found = tuple(path)
                break
        out.append(found or tuple(parts))
    return out


def cells(rec: dict[str, Any], paths: list[tuple[str, ...]]) -> list[Any]:
    row: list[Any] = []
    for path in paths:
        v: Any = rec.get(path[0])
        for k in path[1:]:
            v = v.get(k) if isinstance(v, dict) else None
        if v.__class__ is bool:
            v = "true" if v else "false"
        elif isinstance(v, dict):
            v = orjson.dumps(v.get("records", v)).decode()
        row.append(v)  # the csv writer writes None as an empty field
    return row


def _stream_csv(ctx: Context, soql: str, query_all: bool, cols: list[str] | None, w: CsvResultWriter,
                stop: threading.Event | None) -> bool:
    """Write every row from one cursor, straight from the database rows to CSV cells; False (nothing written)
    when the query needs shaped records: child subqueries, TYPEOF, FIELDS(), aggregates, or sensitive fields,
    whose reads the page path audits."""
    from keel.query.run import stream_rows
    from keel.query.shape import ObjShape, compile_cells
    from keel.services.query import compiled

    if cols is None:
        return False
    with ctx.db.read() as conn:
        cq = compiled(ctx, soql, query_all=query_all, conn=conn)
        p = cq.plan
        if p.kind != "records" or p.children or p.sensitive or not isinstance(p.shape, ObjShape):
            return False
        made = compile_cells(p.shape, cols)
        if made is None:
            return False
        header, cells = made
        w.header(header)
        batches = stream_rows(conn, cq, now=ctx.clock(), time_zone=ctx.actor.time_zone)
        with contextlib.closing(batches):  # close the cursor before the transaction ends, on every exit
            for rows in batches:
                if stop is not None and stop.is_set():
                    raise InterruptedError
                w.rows_of(list(map(cells, rows)))
    return True


def _write_csv(ctx: Context, soql: str, query_all: bool, path: Path, sep: str, eol: str,
               stop: threading.Event | None, *, stream: bool = True) -> int:
    """The result file of a query; ``stream=False`` takes the page path even when streaming could serve it (the
    tests compare the two files byte for byte)."""
    cols = soql_columns(soql)
    w = CsvResultWriter(path, sep, eol)
    try:
        if stream and _stream_csv(ctx, soql, query_all, cols, w, stop):
            return w.rows
        paths: list[tuple[str, ...]] | None = None
        for records in _pages(ctx, soql, query_all):
            if stop is not None and stop.is_set():
                raise InterruptedError
            if paths is None:
                if cols is None:  # FIELDS(), TYPEOF …: the columns the first page actually has
                    cols = list(dict.fromkeys(k for r in records[:500] for k in flatten(r)))
                paths = column_paths(cols, records)
                w.header([".".join(p) for p in paths])
            w.rows_of([cells(r, paths) for r in records])
        if paths is None:
            w.header(cols or [])
    finally:
        w.close()
    return w.rows


def materialise_v2(ctx: Context, job: B.Job, stop: threading.Event | None) -> None:
    """Run a Bulk 2.0 query job as its user and record the result file (replacing any earlier attempt)."""
    d = B.job_dir(ctx, job.id)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "results.csv"
    try:
        n = _write_csv(ctx, job.query or "", job.operation == "queryAll", path, job.sep, job.eol, stop)
    except InterruptedError:
        return
    u = T.uploads
    with ctx.db.transaction() as conn:
        conn.execute(sa.delete(u).where(u.c.job_id == job.pk))
        conn.execute(sa.insert(u).values(job_id=job.pk, seq=1, kind="result", path=str(path), size=0,
                                         state="Completed", rows_done=n, rows_failed=0, result_path=str(path),
                                         result_rows=n, created_date=ctx.clock(), done_date=ctx.clock()))


def materialise_v1(ctx: Context, sys_ctx: Context, job: B.Job, up: Mapping[str, Any]) -> None:
    """A Bulk 1.0 query batch: the SOQL is the upload; results are CSV (XML/CSV jobs) or JSON lines (JSON jobs)."""
    from keel.errors import KeelError

    soql = Path(up["path"]).read_text(encoding="utf-8").strip()
    out = Path(str(up["path"]) + (".json" if job.content_type == "JSON" else ".csv"))
    u = T.uploads
    try:
        if job.content_type == "JSON":
            n = 0
            with open(out, "wb") as f:
                for records in _pages(ctx, soql, job.operation == "queryAll"):
                    for r in records:
                        f.write(orjson.dumps(r) + b"\n")
                        n += 1
                f.flush()
                os.fsync(f.fileno())
        else:
            n = _write_csv(ctx, soql, job.operation == "queryAll", out, ",", "\n", None)
    except KeelError as e:
        with ctx.db.transaction() as conn:
            conn.execute(sa.update(u).where(u.c.id == up["id"]).values(
                state="Failed", state_message=f"{e.code}: {e.message}", done_date=ctx.clock()))
        return
    with ctx.db.transaction() as conn:
        conn.execute(sa.update(u).where(u.c.id == up["id"]).values(
            state="Completed", result_path=str(out), result_rows=n, rows_done=n, done_date=ctx.clock()))


def result_page(path: str, total: int, start: int, max_records: int) -> tuple[bytes, int, int | None]:
    """``(csv bytes with header, rows in page, next start or None)``."""
    count = max(0, min(max_records, total - start))
    nxt = start + count if start + count < total else None
    with open(path, "rb") as f:
        header = _header_bytes(f)
        if count == 0:
            return header, 0, None
        with open(path + ".idx", "rb") as ix:
            def offset(row: int) -> int:
                k = row // INDEX_EVERY
                ix.seek(k * _Q.size)
                raw = ix.read(_Q.size)
                return _Q.unpack(raw)[0] if raw else os.path.getsize(path)
            if start % INDEX_EVERY == 0 and (nxt is None or nxt % INDEX_EVERY == 0):
                a = offset(start)
                b = offset(nxt) if nxt is not None else os.path.getsize(path)
                f.seek(a)
                return header + f.read(b - a), count, nxt
            f.seek(offset(start))
            skip = start % INDEX_EVERY
        first = header.decode()
        eol = "\r\n" if first.endswith("\r\n") else "\n"
        sep = _sniff_sep(first)
        text_in = io.TextIOWrapper(f, encoding="utf-8", newline="")
        reader = csv.reader(text_in, delimiter=sep)
        for _ in range(skip):
            next(reader)
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=sep, lineterminator=eol, quoting=csv.QUOTE_ALL)
        for _ in range(count):
            w.writerow(next(reader))
        return header + buf.getvalue().encode(), count, nxt


def _header_bytes(f: Any) -> bytes:
    """The header row (field names never contain newlines)."""
    f.seek(0)
    return bytes(f.readline())


def _sniff_sep(header: str) -> str:
    # The header is written QUOTE_ALL, so the character after the first closing quote is the delimiter.
    if header.startswith('"'):
        end = header.find('"', 1)
        if end != -1 and end + 1 < len(header) and header[end + 1] not in "\r\n":
            return header[end + 1]
    return ","
