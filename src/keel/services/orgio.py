"""``keel export-org`` / ``keel import-org``: a whole organisation as plain files, portable across databases.

Layout of the directory:
- ``manifest.json``: versions, the source dialect, row counts and the SHA-256 of every file;
- ``metadata/<Object>.yaml``: each object's stored definition with its ids, key prefix and physical names. This is
  a superset of the package format: a package deliberately leaves ids and physical names to the database, and a
  move must keep them, or every stored id and every history row would point somewhere else;
- ``data/<Object>.csv``: every row (recycle bin included), ordered by id, API field names as the header, ids and
  lookups as 18-character ids, numbers, dates and booleans in one canonical text form, so that two exports of the
  same organisation from SQLite and from PostgreSQL are byte-identical;
- ``system/<table>.jsonl``: Keel's own tables (users' credentials, permission sets, sharing, history, audit,
  outbox, recycle bin, bulk and automation state), one JSON object per row;
- ``sequences.json``: each object's id high-water mark (SQLite keeps it in a counter row, PostgreSQL in a sequence).

Import runs in ONE transaction into an empty database: either the whole organisation arrives or nothing does.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection

from keel.automation.tables import create_automation_tables
from keel.context import SYSTEM_ACTOR, Context
from keel.errors import KeelError
from keel.metadata.apply import ensure_initialised
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.store import field_from_json, load_snapshot
from keel.metadata.tables import build_table, index_specs, is_polymorphic, type_column
from keel.metadata.types import TYPES
from keel.query.cursors import create_cursor_tables
from keel.records.restore import advance_ids, id_high_water, restore_rows
from keel.security import lineage, reach
from keel.security.tables import create_security_tables
from keel.services.backup import keel_version
from keel.services.bulk_tables import create_bulk_tables
from keel.storage import ddl, ids, migrate, search
from keel.storage import system as S
from keel.yamlio import load_yaml

FORMAT = "keel-org/1"
# Never exported: metadata rows travel as YAML, the revision is the target's own, cursors are per-session state.
_SKIP_TABLES = {"keel_object", "keel_field", migrate.VERSION_TABLE, "keel_query_cursor"}
_CHUNK = 2000


def _number(v: Any) -> str:
    return format(Decimal(str(v)).normalize(), "f")


def _cell(f: FieldDef, v: Any, prefix: str | None) -> str:
    """One canonical text form per storage type, identical for both dialects."""
    if v is None:
        return ""
    storage = "number" if f.type == "rollup" else TYPES[f.type].storage
    if f.type == "id" or storage == "reference":
        return ids.encode(prefix or "000", int(v))
    if storage == "boolean":
        return "true" if v else "false"
    if storage == "number":
        return _number(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    return str(v)


def _uncell(f: FieldDef, text: str) -> Any:
    if text == "":
        return None
    storage = "number" if f.type == "rollup" else TYPES[f.type].storage
    if f.type == "id" or storage == "reference":
        return ids.split(text)[1]
    return {"boolean": lambda t: t == "true", "number": Decimal, "date": date.fromisoformat,
            "datetime": datetime.fromisoformat, "time": time.fromisoformat}.get(storage, str)(text)


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return _number(v)
    if isinstance(v, bytes):
        return {"$b64": base64.b64encode(v).decode()}
    raise TypeError(type(v))


def _json_value(v: Any) -> Any:
    if isinstance(v, float):
        return _number(v)  # SQLite REAL vs PostgreSQL NUMERIC: one text form
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    return v


def _stored(obj: ObjectDef) -> list[FieldDef]:
    return [f for f in obj.fields if f.column]


def export_org(ctx: Context, out: str | Path) -> dict[str, Any]:
    """Write the organisation under ``out`` (created; must be empty if it exists). Returns the manifest."""
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise KeelError(f"{root} is not empty; export into a new directory.", code="EXPORT_FAILED")
    for sub in ("metadata", "data", "system"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    db = ctx.db
    counts: dict[str, int] = {}
    conn_cm = db.engine.connect()
    if db.dialect == "postgresql":
        conn_cm = conn_cm.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for every table
    with conn_cm as conn, conn.begin():
        revision = migrate.current_revision(conn)
        if revision != migrate.head_revision():
            raise KeelError(f"System tables are at revision {revision}; run `keel migrate` before exporting.",
                            code="MIGRATION_REQUIRED")
        schema = load_snapshot(conn)
        prefixes = {o.api_name: o.key_prefix for o in schema.objects}
        sequences: dict[str, int] = {}
        for obj in schema.objects:
            _export_metadata(conn, obj, root / "metadata" / f"{obj.api_name}.yaml")
            counts[f"data/{obj.api_name}.csv"] = _export_rows(conn, obj, prefixes, root / "data" /
                                                              f"{obj.api_name}.csv")
            sequences[obj.api_name] = id_high_water(conn, obj.table)
        data_tables = {o.table for o in schema.objects}
        for name in sorted(sa.inspect(conn).get_table_names()):
            if name in data_tables or name in _SKIP_TABLES or search.is_search_index(name):
                continue  # search indexes (and FTS5's shadow tables) are rebuilt from the rows on import
            n = _export_system(conn, name, root / "system" / f"{name}.jsonl")
            if n:
                counts[f"system/{name}.jsonl"] = n
            else:  # tables created lazily (bulk, automation) exist on some databases and not others
                (root / "system" / f"{name}.jsonl").unlink()
        (root / "sequences.json").write_text(json.dumps(sequences, indent=2, sort_keys=True) + "\n")
        meta = {k: S.get_meta(conn, k) for k in ("org_id", "schema_version", "system_schema")}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {"format": FORMAT, "keel_version": keel_version(), "dialect": db.dialect,
                "system_revision": revision, **meta, "rows": counts,
                "files": {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _export_metadata(conn: Connection, obj: ObjectDef, path: Path) -> None:
    row = conn.execute(sa.select(S.objects).where(S.objects.c.id == obj.id)).one()
    field_rows = conn.execute(sa.select(S.fields).where(S.fields.c.object_id == obj.id)
                              .order_by(S.fields.c.position)).all()
    doc = {"object": obj.api_name, "id": obj.id, "key_prefix": obj.key_prefix, "table": obj.table,
           "definition": orjson.loads(row.definition),
           "fields": [{"name": r.api_name, "id": r.id, "column": r.column_name, "position": r.position,
                       "definition": orjson.loads(r.definition)} for r in field_rows]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _export_rows(conn: Connection, obj: ObjectDef, prefixes: dict[str, str], path: Path) -> int:
    table = build_table(obj)
    stored = _stored(obj)
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([f.api_name for f in stored] + ["version"])
        result = conn.execution_options(yield_per=_CHUNK).execute(sa.select(table).order_by(table.c.id))
        for row in result.mappings():
            cells = []
            for f in stored:
                assert f.column
                if f.type == "id":
                    prefix: str | None = obj.key_prefix
                elif is_polymorphic(f):
                    prefix = row[type_column(f)]
                else:
                    prefix = prefixes.get(f.reference_to[0]) if f.reference_to else None
                cells.append(_cell(f, row[f.column], prefix))
            w.writerow([*cells, row["version"]])
            n += 1
    return n


def _export_system(conn: Connection, name: str, path: Path) -> int:
    table = sa.Table(name, sa.MetaData(), autoload_with=conn)
    order = list(table.primary_key.columns) or list(table.columns)
    query = sa.select(table).order_by(*order)
    if name == S.sequences.name:  # id counters are dialect-specific; sequences.json carries them
        query = query.where(~table.c.name.like("ids:%"))
    n = 0
    with path.open("wb") as fh:
        for row in conn.execute(query).mappings():
            fh.write(orjson.dumps({str(k): _json_value(v) for k, v in row.items()}, default=_json_default,
                                  option=orjson.OPT_SORT_KEYS) + b"\n")
            n += 1
    return n


def verify(root: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((root / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise KeelError(f"{root}: not a Keel organisation export", code="IMPORT_FAILED")
    for name, digest in manifest["files"].items():
        p = root / name
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            raise KeelError(f"{root}: {name} is missing or changed since export; nothing was imported.",
                            code="IMPORT_FAILED")
    return manifest


def import_org(ctx: Context, src: str | Path) -> dict[str, Any]:
    """Load an export into ``ctx``'s database, which must be empty; everything in one transaction."""
    root = Path(src)
    manifest = verify(root)
    if manifest["system_revision"] != migrate.head_revision():
        raise KeelError(f"The export was made at system revision {manifest['system_revision']}, this Keel is at "
                        f"{migrate.head_revision()}; import it with the same Keel version, migrate, then export "
                        "again.", code="IMPORT_FAILED")
    db = ctx.db
    with db.read() as conn:
        if sa.inspect(conn).get_table_names():
            raise KeelError(f"Refusing to import into {db.url}: the database is not empty.",
                            code="IMPORT_TARGET_NOT_EMPTY")
    sysctx = ctx.as_actor(SYSTEM_ACTOR)
    ensure_initialised(db)  # system tables at the newest revision; removed again if the import fails
    try:
        with db.transaction() as conn:
            for create in (create_cursor_tables, create_security_tables, create_bulk_tables,
                           create_automation_tables):
                create(conn)
            conn.execute(sa.delete(S.meta))
            objects = [_import_metadata(conn, p) for p in sorted((root / "metadata").glob("*.yaml"))]
            sequences = json.loads((root / "sequences.json").read_text())
            for obj in objects:
                for chunk in _read_rows(obj, root / "data" / f"{obj.api_name}.csv"):
                    restore_rows(sysctx, conn, obj, chunk, audit=False)
                advance_ids(conn, obj.table, int(sequences.get(obj.api_name, 0)))
            _import_system(conn, root / "system")
            loaded = load_snapshot(conn)
            reach.mark_shared(conn, loaded)  # the flag is derived from the share rows just loaded
            lineage.restamp_all(conn, loaded)  # and each record's place in the hierarchy from its owner's
            conn.execute(sa.insert(S.audit).values(
                created_date=ctx.clock(), actor_id=SYSTEM_ACTOR.user_id, action="org.import", result="success",
                detail=f"imported {sum(manifest['rows'].values())} row(s) from a {manifest['dialect']} export"))
    except BaseException:
        _drop_everything(db)
        raise
    ctx.metadata.invalidate()
    return manifest


def _drop_everything(db: Any) -> None:
    with db.transaction() as conn:
        if conn.dialect.name == "sqlite":  # FTS5 tables first: reflection cannot read them
            for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                                                "sql LIKE 'CREATE VIRTUAL TABLE%'").all():
                search.drop(conn, str(name))
        md = sa.MetaData()
        md.reflect(conn)
        md.drop_all(conn)


def _import_metadata(conn: Connection, path: Path) -> ObjectDef:
    doc = load_yaml(path.read_text(encoding="utf-8"))
    conn.execute(sa.insert(S.objects).values(id=doc["id"], api_name=doc["object"], key_prefix=doc["key_prefix"],
                                             table_name=doc["table"],
                                             definition=orjson.dumps(doc["definition"]).decode()))
    fields = []
    for f in doc["fields"]:
        raw = orjson.dumps(f["definition"])
        conn.execute(sa.insert(S.fields).values(id=f["id"], object_id=doc["id"], api_name=f["name"],
                                                column_name=f["column"], position=f["position"],
                                                definition=raw.decode()))
        fields.append(field_from_json(raw, id=f["id"]))
    obj = load_snapshot(conn).get_object(doc["object"])
    ddl.create_table(conn, build_table(obj))
    for spec in index_specs(obj):
        ddl.create_index(conn, obj.table, spec)
    return obj


def _read_rows(obj: ObjectDef, path: Path) -> Iterator[list[dict[str, Any]]]:
    by_name = {f.api_name: f for f in _stored(obj)}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        chunk: list[dict[str, Any]] = []
        for cells in reader:
            row: dict[str, Any] = {}
            for name, text in zip(header, cells, strict=True):
                if name == "version":
                    row["version"] = int(text)
                    continue
                f = by_name[name]
                assert f.column
                row[f.column] = _uncell(f, text)
                if is_polymorphic(f):
                    row[type_column(f)] = ids.split(text)[0] if text else None
            chunk.append(row)
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _import_system(conn: Connection, folder: Path) -> None:
    names = [p.stem for p in sorted(folder.glob("*.jsonl"))]
    md = sa.MetaData()
    md.reflect(conn, only=[*names, S.sequences.name])
    for table in md.sorted_tables:
        path = folder / f"{table.name}.jsonl"
        if not path.exists():
            continue
        decoders = {c.name: _decoder(c) for c in table.columns}
        rows = [{k: decoders[k](v) for k, v in orjson.loads(line).items()}
                for line in path.read_bytes().splitlines() if line]
        if table.name == S.sequences.name:
            conn.execute(sa.delete(table).where(~table.c.name.like("ids:%")))
        for i in range(0, len(rows), _CHUNK):
            conn.execute(sa.insert(table), rows[i:i + _CHUNK])
        pk = list(table.primary_key.columns)
        if rows and conn.dialect.name == "postgresql" and len(pk) == 1 and pk[0].autoincrement is not False \
                and isinstance(pk[0].type, sa.Integer):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', '{pk[0].name}'), "
                f"(SELECT MAX(\"{pk[0].name}\") FROM \"{table.name}\")) "
                f"WHERE pg_get_serial_sequence('\"{table.name}\"', '{pk[0].name}') IS NOT NULL")


def _decoder(col: sa.Column[Any]) -> Any:
    try:
        py = col.type.python_type
    except NotImplementedError:
        py = object
    parse: Any = {datetime: datetime.fromisoformat, date: date.fromisoformat, time: time.fromisoformat,
                  Decimal: Decimal, float: float}.get(py)

    def decode(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dict) and "$b64" in v:
            return base64.b64decode(v["$b64"])
        if parse is not None and isinstance(v, str):
            return parse(v)
        return v
    return decode
