"""Record types in the lifecycle: the default record type on create, and the checks every write passes.

A record of an object that declares record types names one in ``RecordTypeId`` (or none: the master type).
On create a missing one is filled with the object's default record type, and blank picklists get that type's
default values, before before-save flows run, so a flow sees what will be saved. After the flows, each named
record type must be an active record type of this very object (Salesforce: ``INVALID_CROSS_REFERENCE_KEY``), and
each picklist value must be available for the record's type (``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``). The
``RecordType`` rows themselves are metadata: only the deploy writes them, as the system actor.

One small query per batch reads the object's record types; nothing runs for objects without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.recordtypes import RecordTypeDef, default_record_type, record_types
from keel.metadata.tables import table_for
from keel.records.hooks import RowState
from keel.storage import ids

if TYPE_CHECKING:
    from keel.context import Context
    from keel.records.save import Batch


@dataclass(frozen=True, slots=True)
class RecordTypeRow:
    """A ``RecordType`` record: its public id and what it says."""

    id: str
    developer_name: str
    label: str
    active: bool
    description: str | None


def load_rows(conn: Connection, schema: SchemaSnapshot, obj_name: str) -> list[RecordTypeRow]:
    """The ``RecordType`` records of one object (active or not), in the order they were created."""
    rt = schema.find_object("RecordType")
    if rt is None:
        return []
    t = table_for(schema, rt)
    c = {n: t.c[rt.get_field(n).column or ""] for n in ("DeveloperName", "SobjectType", "IsActive", "Description")}
    q = (sa.select(t.c.id, c["DeveloperName"], t.c.name, c["IsActive"], c["Description"])
         .where(c["SobjectType"] == obj_name, t.c.is_deleted == sa.false()).order_by(t.c.id))
    return [RecordTypeRow(ids.encode(rt.key_prefix, pk), str(dev), str(label), bool(active), desc)
            for pk, dev, label, active, desc in conn.execute(q)]


def refuse_direct_writes(ctx: Context, obj: ObjectDef, batch: Batch) -> None:
    """``RecordType`` rows follow the objects' metadata; a write from anyone else would drift from it."""
    if obj.key != "recordtype" or ctx.actor.is_system:
        return
    for r in batch.rows:
        batch.fail(r.index, "INSUFFICIENT_ACCESS_OR_READONLY", "Record types are metadata: declare them under "
                   "record_types in the object's YAML and deploy it.", ["Id"])
    batch.prune()


def apply_defaults(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, rows: Sequence[RowState],
                   cache: dict[str, list[RecordTypeRow]]) -> None:
    """New rows without a record type get the default one; blank picklists get the type's default values."""
    declared = record_types(obj)
    if not declared or not any(r.prior is None for r in rows):
        return
    by_dev = {row.developer_name.lower(): row for row in _rows(conn, schema, obj, cache)}
    by_id = {row.id: row for row in by_dev.values()}
    types = {d.developer_name.lower(): d for d in declared}
    default = default_record_type(obj)
    default_row = by_dev.get(default.developer_name.lower()) if default else None
    for r in rows:
        if r.prior is not None:
            continue
        if r.values.get("RecordTypeId") is None and default_row is not None:
            r.values["RecordTypeId"] = default_row.id
        row = by_id.get(str(r.values.get("RecordTypeId")))
        spec = types.get(row.developer_name.lower()) if row else None
        for fname, (_values, value) in (spec.picklists or {}).items() if spec else ():
            if value is not None and r.values.get(fname) is None:
                r.values[fname] = value


def check(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, batch: Batch,
          cache: dict[str, list[RecordTypeRow]]) -> None:
    """Refuse a record type that is not an active one of this object, and picklist values its type lacks."""
    declared = record_types(obj)
    if not declared:
        return
    by_id = {row.id: row for row in _rows(conn, schema, obj, cache)}
    types = {d.developer_name.lower(): d for d in declared}
    restricted = {f for d in declared for f in (d.picklists or {})}
    for r in batch.rows:
        rt_id = r.values.get("RecordTypeId")
        type_changed = r.prior is None or "RecordTypeId" in r.changed
        row = by_id.get(str(rt_id)) if rt_id is not None else None
        if rt_id is not None and type_changed and (row is None or not row.active):
            what = "is inactive" if row is not None else f"is not a record type of {obj.label}"
            batch.fail(r.index, "INVALID_CROSS_REFERENCE_KEY",
                       f"invalid cross reference id: Record Type ID {rt_id} {what}", ["RecordTypeId"])
            continue
        spec = types.get(row.developer_name.lower()) if row is not None else None
        if spec is not None:
            _check_values(spec, obj, r, restricted, type_changed, batch)


def _check_values(spec: RecordTypeDef, obj: ObjectDef, r: RowState, restricted: set[str], type_changed: bool,
                  batch: Batch) -> None:
    for fname in restricted:
        allowed = spec.values_for(fname)
        v = r.values.get(fname)
        if allowed is None or v is None or not (type_changed or fname in r.changed):
            continue
        f = obj.get_field(fname)
        parts = str(v).split(";") if f.type == "multipicklist" else [str(v)]
        low = {a.lower() for a in allowed}
        bad = next((p for p in parts if p.lower() not in low), None)
        if bad is not None:
            batch.fail(r.index, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                       f"{f.label}: bad value for restricted picklist field: {bad} (not available for record type "
                       f"{spec.label}; available: {', '.join(allowed)})", [f.api_name])


def _rows(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef,
          cache: dict[str, list[RecordTypeRow]]) -> list[RecordTypeRow]:
    """Read once per save: defaults and checks of one batch share the query."""
    hit = cache.get(obj.key)
    if hit is None:
        hit = cache[obj.key] = load_rows(conn, schema, obj.api_name)
    return hit
