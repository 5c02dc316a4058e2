"""Reading and writing metadata rows, and the per-process snapshot cache.

The definition of each object and field is stored as JSON of its non-default attributes, so the snapshot is
rebuilt exactly from the rows. The schema version in ``keel_meta`` tells every process when its cached snapshot is
stale; caches are replaced only after the change has committed.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import FieldDef, IndexDef, ObjectDef, PicklistValue, SchemaSnapshot, ValidationRule
from keel.storage import system as S

_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FieldDef) if f.default is not dataclasses.MISSING}
_OBJECT_SKIP = {"fields", "id", "table", "key_prefix", "api_name"}


def field_to_json(f: FieldDef) -> bytes:
    out: dict[str, Any] = {}
    for k in (x.name for x in dataclasses.fields(FieldDef)):
        v = getattr(f, k)
        if k in ("id", "renamed_from") or (k in _FIELD_DEFAULTS and v == _FIELD_DEFAULTS[k]):
            continue
        if k == "values":
            v = [dataclasses.asdict(p) for p in v]
        out[k] = v
    return orjson.dumps(out)


def field_from_json(raw: str | bytes, *, id: int) -> FieldDef:
    d = orjson.loads(raw)
    if "values" in d:
        d["values"] = tuple(PicklistValue(**{**p, "valid_for": tuple(p.get("valid_for", ()))}) for p in d["values"])
    for k in ("reference_to", "parts"):
        if k in d:
            d[k] = tuple(d[k])
    return FieldDef(id=id, **d)


def object_to_json(o: ObjectDef) -> bytes:
    out: dict[str, Any] = {}
    for k in (x.name for x in dataclasses.fields(ObjectDef)):
        if k in _OBJECT_SKIP or k in ("renamed_from", "source"):
            continue
        v = getattr(o, k)
        if k == "validation_rules":
            v = [dataclasses.asdict(r) for r in v]
        elif k == "indexes":
            if not v:
                continue  # objects without composite indexes keep the rows they had before indexes existed
            v = [dataclasses.asdict(i) for i in v]
        elif k == "extra":
            v = dict(v)
        out[k] = v
    return orjson.dumps(out)


def object_from_json(raw: str | bytes, *, id: int, api_name: str, key_prefix: str, table: str,
                     fields: tuple[FieldDef, ...]) -> ObjectDef:
    d = orjson.loads(raw)
    d["validation_rules"] = tuple(ValidationRule(**r) for r in d.get("validation_rules", ()))
    d["indexes"] = tuple(IndexDef(**{**i, "fields": tuple(i["fields"]), "include": tuple(i.get("include", ()))})
                         for i in d.get("indexes", ()))
    return ObjectDef(id=id, api_name=api_name, key_prefix=key_prefix, table=table, fields=fields, **d)


def load_snapshot(conn: Connection) -> SchemaSnapshot:
    version = int(S.get_meta(conn, "schema_version") or 0)
    field_rows = conn.execute(sa.select(S.fields).order_by(S.fields.c.object_id, S.fields.c.position)).all()
    by_object: dict[int, list[FieldDef]] = {}
    for r in field_rows:
        by_object.setdefault(r.object_id, []).append(field_from_json(r.definition, id=r.id))
    objs = []
    for r in conn.execute(sa.select(S.objects).order_by(S.objects.c.id)).all():
        objs.append(object_from_json(r.definition, id=r.id, api_name=r.api_name, key_prefix=r.key_prefix,
                                     table=r.table_name, fields=tuple(by_object.get(r.id, ()))))
    return SchemaSnapshot(version=version, objects=tuple(objs))


def current_version(conn: Connection) -> int:
    return int(S.get_meta(conn, "schema_version") or 0)


MEMO = "keel_snapshot"  # conn.info: (cache, transaction, snapshot) of the transaction in progress


class SnapshotCache:
    """Holds the latest committed snapshot for one database; cheap to consult on every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: SchemaSnapshot | None = None

    def get(self, conn: Connection) -> SchemaSnapshot:
        """The snapshot at the version ``conn`` sees. The version is read once per transaction: later calls in the
        same transaction reuse it (a change of ``schema_version`` through ``set_meta`` in that transaction forgets
        it), so one save does not re-read the version at every step."""
        tx = conn.get_transaction()
        memo = conn.info.get(MEMO)
        if tx is not None and memo is not None and memo[0] is self and memo[1] is tx:
            snap = memo[2]
            assert isinstance(snap, SchemaSnapshot)
            return snap
        snap = self._snapshot
        if snap is None or snap.version != current_version(conn):
            with self._lock:
                snap = load_snapshot(conn)
                self._snapshot = snap
        if tx is not None:
            conn.info[MEMO] = (self, tx, snap)
        return snap

    def peek(self) -> SchemaSnapshot | None:
        return self._snapshot

    def replace(self, snapshot: SchemaSnapshot) -> None:
        """Install a snapshot after the transaction that produced it committed."""
        with self._lock:
            self._snapshot = snapshot

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None
