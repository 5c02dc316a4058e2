"""The write step: rows to the database, field history, and outbox events, all in the caller's transaction.

Inserts go through the DBAPI cursor's executemany, or COPY on PostgreSQL for large batches, because that is what
keeps a full-lifecycle bulk load close to the raw database's speed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import SchemaSnapshot
from keel.metadata.search_index import index_new_rows
from keel.metadata.tables import LINEAGE_COLUMNS, is_polymorphic, table_for, type_column
from keel.records.codec import encode_datetime, history_text
from keel.records.hooks import RowState
from keel.records.prepare import WritePlan
from keel.security import lineage
from keel.storage import ddl, ids
from keel.storage import system as S

if TYPE_CHECKING:
    from keel.context import Context

COPY_THRESHOLD = 200


def write_rows(ctx: Context, conn: Connection, schema: SchemaSnapshot, plan: WritePlan,
               rows: Sequence[RowState]) -> None:
    now = ctx.clock()
    actor = ctx.actor.user_id
    inserts = [r for r in rows if r.prior is None]
    updates = [r for r in rows if r.prior is not None and r.changed]
    if inserts:
        _insert(conn, plan, inserts, now, actor)
        index_new_rows(conn, plan.obj, [r.pk for r in inserts if r.pk is not None], schema.cache)
    if updates:
        _update(conn, schema, plan, updates, now, actor)
    _history(conn, plan, updates, now, actor)
    _outbox(conn, plan, inserts, updates, now)


def allocate(conn: Connection, plan: WritePlan, rows: Sequence[RowState]) -> None:
    """Give new rows their primary keys before validation, so records in one batch may point at each other."""
    new = [r for r in rows if r.prior is None and r.pk is None]
    for r, pk in zip(new, ddl.allocate_ids(conn, plan.obj.table, len(new)), strict=True):
        r.pk = pk


def _owner(values: dict[str, Any]) -> int:
    raw = values.get("OwnerId")
    return ids.split_owner(str(raw))[1] if raw else 0


def _lineages(conn: Connection, rows: Sequence[RowState]) -> dict[int, lineage.Lineage]:
    """The lineage of the rows' owners that have one (``security/lineage.py``); look values up with ``_owner``."""
    return lineage.of_owners(conn, {o for r in rows if (o := _owner(r.values))})


def _stamped(plan: WritePlan, conn: Connection, rows: Sequence[RowState]) -> Any:
    """The row builder, extended with the owner's lineage when any owner has one."""
    found = _lineages(conn, rows)
    if not found:
        return None
    inner = plan.build_row
    get = found.get
    none = lineage.NONE

    def build(values: dict[str, Any], pk: int | None, stamp: Any, actor: int, deleted: Any) -> tuple[Any, ...]:
        return (*inner(values, pk, stamp, actor, deleted), *get(_owner(values), none))
    return build


def _insert(conn: Connection, plan: WritePlan, rows: Sequence[RowState], now: datetime, actor: int) -> None:
    table = plan.obj.table
    dialect = conn.dialect.name
    cols = plan.insert_columns
    build = plan.build_row
    types = plan.copy_types
    if "ownerid" in plan.by_key:
        stamped = _stamped(plan, conn, rows)
        if stamped is not None:
            build, cols = stamped, (*cols, *LINEAGE_COLUMNS)
            types = (*types, "int2", *("int8",) * (len(LINEAGE_COLUMNS) - 1))
    col_sql = ", ".join(f'"{c}"' for c in cols)
    raw = conn.connection.driver_connection
    assert raw is not None
    if dialect == "postgresql":
        from psycopg.copy import QueuedLibpqWriter  # PostgreSQL's driver is an optional dependency

        with raw.cursor() as cur:
            if len(rows) >= COPY_THRESHOLD:
                # Binary COPY: the row builder gives every value its column's exact Python type. A writer thread
                # sends the data while this one builds the next rows, so the server's work overlaps ours.
                with cur.copy(f'COPY "{table}" ({col_sql}) FROM STDIN (FORMAT BINARY)',
                              writer=QueuedLibpqWriter(cur)) as copy:
                    copy.set_types(list(types))
                    write_row = copy.write_row
                    for r in rows:
                        write_row(build(r.values, r.pk, now, actor, False))
            else:
                tuples = [build(r.values, r.pk, now, actor, False) for r in rows]
                marks = ", ".join(["%s"] * len(cols))
                cur.executemany(f'INSERT INTO "{table}" ({col_sql}) VALUES ({marks})', tuples)
        return
    stamp = encode_datetime(now, "sqlite")
    marks = ", ".join(["?"] * len(cols))
    cur = raw.cursor()
    try:
        cur.executemany(f'INSERT INTO "{table}" ({col_sql}) VALUES ({marks})',
                        [build(r.values, r.pk, stamp, actor, 0) for r in rows])
    finally:
        cur.close()


def _update(conn: Connection, schema: SchemaSnapshot, plan: WritePlan, rows: Sequence[RowState], now: datetime,
            actor: int) -> None:
    t = table_for(schema, plan.obj)
    by_shape: dict[tuple[str, ...], list[RowState]] = {}
    for r in rows:
        shape = tuple(sorted(f for f in r.changed if f in plan.encoders))
        by_shape.setdefault(shape, []).append(r)
    for shape, group in by_shape.items():
        values: dict[str, Any] = {
            "last_modified_date": now, "last_modified_by_id": actor, "system_modstamp": now,
            "version": t.c.version + 1,
        }
        fields = [plan.by_key[name.lower()] for name in shape]
        for f in fields:
            assert f.column
            values[f.column] = sa.bindparam(f"v_{f.column}")
            if is_polymorphic(f):
                values[type_column(f)] = sa.bindparam(f"t_{f.column}")
        found: dict[int, lineage.Lineage] | None = None
        if "OwnerId" in shape:  # a new owner: the record takes their place in the hierarchy
            found = _lineages(conn, group)
            values.update((c, sa.bindparam(f"l_{c}")) for c in LINEAGE_COLUMNS)
        stmt = sa.update(t).where(t.c.id == sa.bindparam("b_id")).values(values)
        params = []
        for r in group:
            p: dict[str, Any] = {"b_id": r.pk}
            for f in fields:
                raw = r.values.get(f.api_name)
                assert f.column
                if f.is_relationship:
                    split = ids.split_owner if f.column == "owner_id" else ids.split
                    prefix, n = split(raw) if raw is not None else (None, None)
                    p[f"v_{f.column}"] = n
                    if is_polymorphic(f):
                        p[f"t_{f.column}"] = prefix
                else:
                    p[f"v_{f.column}"] = raw
            if found is not None:
                p.update(zip((f"l_{c}" for c in LINEAGE_COLUMNS),
                             found.get(_owner(r.values), lineage.NONE), strict=True))
            params.append(p)
        conn.execute(stmt, params)


def _history(conn: Connection, plan: WritePlan, updates: Sequence[RowState], now: datetime, actor: int) -> None:
    tracked = plan.obj.tracked_fields
    if not tracked:
        return
    # Creation is not repeated here: the record's CreatedDate and CreatedById already say it, and the history
    # timeline shows them first.
    rows: list[dict[str, Any]] = []
    oid = plan.obj.id
    for r in updates:
        assert r.prior is not None
        for f in tracked:
            if f.api_name in r.changed:
                rows.append({"object_id": oid, "record_id": r.pk, "field": f.api_name,
                             "old_value": history_text(r.prior.get(f.api_name)),
                             "new_value": history_text(r.values.get(f.api_name)),
                             "created_date": now, "created_by_id": actor})
    if rows:
        conn.execute(sa.insert(S.history), rows)


def _outbox(conn: Connection, plan: WritePlan, inserts: Sequence[RowState], updates: Sequence[RowState],
            now: datetime) -> None:
    """One change event per batch and kind, like Salesforce's ChangeEvent with its ``recordIds`` list."""
    events = []
    for kind, group in (("CREATE", inserts), ("UPDATE", updates)):
        if not group:
            continue
        changed = sorted(set().union(*(r.changed for r in group)) - {"__version__"})
        events.append(change_event(plan.obj.id, plan.obj.api_name, kind, [r.pk for r in group if r.pk is not None],
                                   changed, now))
    if events:
        insert_outbox(conn, events)


_OUTBOX_COLUMNS = ("topic", "object_id", "record_id", "payload", "idempotency_key", "state", "attempts",
                   "next_attempt_at", "created_date")
_OUTBOX_SQL = (f"INSERT INTO {S.outbox.name} ({', '.join(_OUTBOX_COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in _OUTBOX_COLUMNS)})")


def insert_outbox(conn: Connection, events: Sequence[dict[str, Any]]) -> None:
    """Outbox rows (``change_event`` dicts) as one driver-level executemany: this runs on every save."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_OUTBOX_SQL.replace("?", "%s"), [tuple(e[c] for c in _OUTBOX_COLUMNS) for e in events])
        return
    rows = [tuple(encode_datetime(v, "sqlite") if isinstance(v, datetime) else v
                  for v in (e[c] for c in _OUTBOX_COLUMNS)) for e in events]
    conn.exec_driver_sql(_OUTBOX_SQL, rows)


def change_event(object_id: int, object_name: str, kind: str, record_pks: Sequence[int], changed: Sequence[str],
                 now: datetime) -> dict[str, Any]:
    """An outbox row. Record keys are stored as integers; the dispatcher renders public ids when it delivers."""
    payload = {"entityName": object_name, "changeType": kind, "recordKeys": list(record_pks),
               "changedFields": list(changed), "commitTimestamp": int(now.timestamp() * 1000)}
    return {"topic": "change", "object_id": object_id, "record_id": None,
            "payload": orjson.dumps(payload).decode(), "idempotency_key": uuid.uuid4().hex, "state": "pending",
            "attempts": 0, "next_attempt_at": now, "created_date": now}
