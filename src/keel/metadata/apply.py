"""Apply: execute a plan's metadata rows and DDL in ONE transaction, after checking it would lose no data."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import ConflictError, MetadataError
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.plan import Plan
from keel.metadata.store import SnapshotCache, current_version, field_to_json, object_to_json
from keel.metadata.tables import build_table, field_columns, index_specs
from keel.metadata.types import TYPES
from keel.storage import ddl
from keel.storage import system as S
from keel.storage.ddl import IndexSpec
from keel.storage.engine import Database


def data_problems(conn: Connection, plan: Plan) -> list[str]:
    """Changes in the plan that existing rows forbid, each with the number of rows affected."""
    problems: list[str] = []
    for op in plan.ops:
        if op.kind != "update_field":
            continue
        old, new = op.before, op.after
        assert isinstance(old, FieldDef) and isinstance(new, FieldDef)
        if not new.column:
            continue
        table = (plan.after.find_object(op.object) or plan.before.get_object(op.object)).table
        col = f'"{new.column}"'
        live = "is_deleted = false"
        at = f"{op.object}.{new.api_name}"
        if TYPES[new.type].storage == "text" and new.length and (old.length or 0) > new.length:
            n = ddl.count_rows(conn, table, f"length({col}) > {int(new.length)}")
            if n:
                problems.append(f"{at}: narrowing the length to {new.length} would truncate {n} row(s)")
        if new.required and not old.required and new.type != "checkbox":
            n = ddl.count_rows(conn, table, f"{col} IS NULL AND {live}")
            if n:
                problems.append(f"{at}: {n} row(s) have no value, so the field cannot become required")
        if new.unique and not old.unique:
            expr = f"lower({col})" if TYPES[new.type].storage == "text" else col
            n = int(conn.exec_driver_sql(
                f'SELECT COUNT(*) FROM (SELECT {expr} FROM "{table}" WHERE {col} IS NOT NULL AND {live} '
                f"GROUP BY {expr} HAVING COUNT(*) > 1) d"
            ).scalar() or 0)
            if n:
                problems.append(f"{at}: {n} value(s) are duplicated, so the field cannot become unique")
        if new.restricted and new.type == "picklist":
            allowed = [v.value.lower() for v in new.values]
            marks = ", ".join(f":v{i}" for i in range(len(allowed)))
            n = int(conn.execute(
                sa.text(f'SELECT COUNT(*) FROM "{table}" WHERE {col} IS NOT NULL AND lower({col}) NOT IN ({marks})'),
                {f"v{i}": v for i, v in enumerate(allowed)},
            ).scalar() or 0)
            if n:
                problems.append(f"{at}: {n} row(s) hold values that are not in the restricted picklist")
        if (TYPES[new.type].storage == "number" and new.precision and new.scale is not None and old.precision
                and (new.precision - new.scale) < (old.precision - (old.scale or 0))):
            limit = 10 ** (new.precision - new.scale)
            n = ddl.count_rows(conn, table, f"abs({col}) >= {limit}")
            if n:
                problems.append(f"{at}: {n} row(s) exceed the new precision")
    return problems


def apply_plan(db: Database, plan: Plan, cache: SnapshotCache | None = None,
               then: Callable[[Connection], object] | None = None) -> None:
    """Run the plan atomically. Raises ``MetadataError`` (data would be lost) or ``ConflictError`` (stale plan).
    ``then`` runs in the same transaction after the schema changed: the rows that follow metadata (record types)
    are written by layers above this one, and must commit or roll back with it."""
    if plan.empty:
        return
    with db.transaction() as conn:
        S.create_system_tables(conn)
        _lock_schema(conn)
        if current_version(conn) != plan.before.version:
            raise ConflictError("The schema changed since this plan was made; plan again.")
        problems = data_problems(conn, plan)
        if problems:
            raise MetadataError("The change would lose or break data:\n  " + "\n  ".join(problems))
        execute(conn, plan)
        S.set_meta(conn, "schema_version", str(plan.after.version))
        if then is not None:
            then(conn)
    if cache is not None:
        cache.replace(plan.after)


def _lock_schema(conn: Connection) -> None:
    """Serialise metadata changes across processes (SQLite already has a single writer)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242)")


def execute(conn: Connection, plan: Plan) -> None:
    """Run the operations: indexes are dropped first (SQLite refuses to drop a column an index still names) and
    created last (after the columns they name exist); a new table is created with all its indexes."""
    touched: dict[str, ObjectDef] = {}
    created: set[str] = set()
    for op in plan.ops:
        if op.kind == "drop_index":
            assert isinstance(op.before, IndexSpec)
            ddl.drop_index(conn, op.before.name)
    for op in plan.ops:
        if op.kind == "create_object":
            assert isinstance(op.after, ObjectDef)
            obj = op.after
            ddl.create_table(conn, build_table(obj))
            for spec in index_specs(obj):
                ddl.create_index(conn, obj.table, spec)
            conn.execute(sa.insert(S.objects).values(id=obj.id, api_name=obj.api_name, key_prefix=obj.key_prefix,
                                                     table_name=obj.table, definition=""))
            touched[obj.key] = obj
            created.add(obj.key)
        elif op.kind == "delete_object":
            assert isinstance(op.before, ObjectDef)
            ddl.drop_table(conn, op.before.table)
            conn.execute(sa.delete(S.fields).where(S.fields.c.object_id == op.before.id))
            conn.execute(sa.delete(S.objects).where(S.objects.c.id == op.before.id))
        elif op.kind in ("add_field", "update_field", "delete_field"):
            owner = plan.after.find_object(op.object)
            _field_ddl(conn, op.kind, op.before, op.after, owner or plan.before.get_object(op.object))
            if owner is not None:
                touched[owner.key] = owner
        elif op.kind not in ("create_index", "drop_index"):  # rename_object, update_object, rename_field
            target = plan.after.find_object(op.object)
            if target is not None:
                touched[target.key] = target
    for op in plan.ops:
        if op.kind == "create_index" and op.object.lower() not in created:
            assert isinstance(op.after, IndexSpec)
            ddl.create_index(conn, plan.after.get_object(op.object).table, op.after)
    for written in touched.values():
        _write_rows(conn, written)


def _field_ddl(conn: Connection, kind: str, before: object, after: object, obj: ObjectDef) -> None:
    """Columns only: the plan lists the field's indexes as their own operations."""
    old = before if isinstance(before, FieldDef) else None
    new = after if isinstance(after, FieldDef) else None
    if kind == "delete_field" and old is not None and old.column:
        for col in field_columns(old):
            ddl.drop_column(conn, obj.table, col.name)
    if kind == "add_field" and new is not None:
        for col in field_columns(new):
            ddl.add_column(conn, obj.table, col)
            if new.type == "checkbox":
                conn.exec_driver_sql(f'UPDATE "{obj.table}" SET "{col.name}" = false WHERE "{col.name}" IS NULL')


def _write_rows(conn: Connection, obj: ObjectDef) -> None:
    conn.execute(sa.update(S.objects).where(S.objects.c.id == obj.id).values(
        api_name=obj.api_name, definition=object_to_json(obj).decode()))
    conn.execute(sa.delete(S.fields).where(S.fields.c.object_id == obj.id))
    conn.execute(sa.insert(S.fields), [
        {"id": f.id, "object_id": obj.id, "api_name": f.api_name, "column_name": f.column, "position": i,
         "definition": field_to_json(f).decode()}
        for i, f in enumerate(obj.fields)
    ])


def ensure_initialised(db: Database) -> None:
    from keel.storage.migrate import stamp_head

    with db.transaction() as conn:
        fresh = not sa.inspect(conn).has_table(S.meta.name)
        S.create_system_tables(conn)
        if fresh:  # new tables are current by construction; older databases are upgraded by `keel migrate`
            stamp_head(conn)
        if S.get_meta(conn, "schema_version") is None:
            S.set_meta(conn, "schema_version", "0")
            S.set_meta(conn, "system_schema", str(S.SCHEMA_VERSION))
