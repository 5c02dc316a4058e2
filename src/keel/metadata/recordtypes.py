"""Record types: named variants of one object, each offering its own subset of every picklist's values.

An object's YAML declares them under ``record_types``::

    record_types:
      - name: Vendor            # the developer name (an API name)
        label: Vendor
        active: true            # default true
        default: false          # the record type new records get when they name none (at most one)
        description: Suppliers we buy from.
        picklists:              # per picklist field: the values available for this type (others: all values)
          Type: {values: [Vendor], default: Vendor}
          Risk_Rating__c: [Low, Medium, High]

They are checked here, at plan time, against the object's own fields, and kept in canonical form in the object's
``extra`` so a change is an ``update_object`` in the plan like any other. An object that declares record types
gets the standard ``RecordTypeId`` lookup to the ``RecordType`` object (whose rows the deploy keeps in step with
the declarations; see ``services/recordtypes.py``). A record with no record type has the master record type, as
in Salesforce: every value of every picklist is available to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from keel.errors import MetadataError
from keel.metadata.model import FieldDef, ObjectDef

_DEV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_KEYS = frozenset({"name", "label", "active", "default", "description", "picklists"})
MASTER_ID = "012000000000000AAA"  # Salesforce's id for the master record type of every object
RECORD_TYPE_FIELD = FieldDef("RecordTypeId", "lookup", "Record Type ID", column="record_type_id", standard=True,
                             reference_to=("RecordType",), relationship_name="RecordType")


@dataclass(frozen=True, slots=True)
class RecordTypeDef:
    developer_name: str
    label: str
    active: bool = True
    default: bool = False
    description: str | None = None
    # picklist field API name -> (available values, default value or None)
    picklists: Mapping[str, tuple[tuple[str, ...], str | None]] | None = None

    def values_for(self, field: str) -> tuple[str, ...] | None:
        """The values available for ``field`` on this record type; None when it restricts nothing."""
        hit = (self.picklists or {}).get(field)
        return hit[0] if hit else None


def record_types(obj: ObjectDef) -> tuple[RecordTypeDef, ...]:
    """The record types ``obj`` declares (canonical form, from ``extra``); empty for most objects."""
    memo = obj.__dict__.get("_record_types")
    if memo is not None:
        return memo  # type: ignore[no-any-return]
    out = tuple(
        RecordTypeDef(str(d["name"]), str(d["label"]), bool(d["active"]), bool(d["default"]), d.get("description"),
                      {k: (tuple(v["values"]), v.get("default")) for k, v in (d.get("picklists") or {}).items()})
        for d in obj.extra.get("record_types") or ()
    )
    obj.__dict__["_record_types"] = out
    return out


def default_record_type(obj: ObjectDef) -> RecordTypeDef | None:
    return next((rt for rt in record_types(obj) if rt.default and rt.active), None)


def with_record_types(obj: ObjectDef, raw: Any, where: str, *, merge: bool = False) -> ObjectDef:
    """``obj`` with the record types of ``raw`` checked, in canonical form, and with ``RecordTypeId``. With
    ``merge`` (an app extending a standard object), types of other names that ``obj`` already has are kept."""
    if raw is None:
        return obj
    if not isinstance(raw, list):
        raise MetadataError(f"{where}: record_types must be a list of mappings")
    declared = [_canonical(obj, r, f"{where}, record type #{i + 1}") for i, r in enumerate(raw)]
    names = [d["name"].lower() for d in declared]
    if len(set(names)) != len(names):
        raise MetadataError(f"{where}: record_types name a developer name twice")
    kept = [d for d in obj.extra.get("record_types") or () if merge and str(d["name"]).lower() not in names]
    merged = kept + declared
    if sum(1 for d in merged if d["default"]) > 1:
        raise MetadataError(f"{where}: at most one record type is the default")
    if any(d["default"] and not d["active"] for d in merged):
        raise MetadataError(f"{where}: the default record type must be active")
    fields = obj.fields if obj.find_field("RecordTypeId") else (*obj.fields, RECORD_TYPE_FIELD)
    return replace(obj, fields=fields, extra={**obj.extra, "record_types": merged})


def _canonical(obj: ObjectDef, raw: Any, at: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MetadataError(f"{at}: must be a mapping with name and label")
    unknown = set(raw) - _KEYS
    if unknown:
        raise MetadataError(f"{at}: unknown key(s) {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _DEV_NAME.match(name) or name.lower() == "master" or len(name) > 80:
        raise MetadataError(f"{at}: name must be a developer name such as Vendor (and not Master)")
    at = f"{at} ({name})"
    for key in ("active", "default"):
        if key in raw and not isinstance(raw[key], bool):
            raise MetadataError(f"{at}: {key} must be true or false")
    picklists: dict[str, dict[str, Any]] = {}
    spec = raw.get("picklists") or {}
    if not isinstance(spec, dict):
        raise MetadataError(f"{at}: picklists maps picklist field names to their available values")
    for fname, allowed in spec.items():
        f = obj.find_field(str(fname))
        if f is None or f.type not in ("picklist", "multipicklist"):
            raise MetadataError(f"{at}: {fname!r} is not a picklist field of {obj.api_name}")
        picklists[f.api_name] = _subset(f, allowed, f"{at}, picklist {f.api_name}")
    out: dict[str, Any] = {"name": name, "label": str(raw.get("label") or name.replace("_", " ")),
                           "active": raw.get("active", True), "default": raw.get("default", False),
                           "picklists": picklists}
    if raw.get("description"):
        out["description"] = str(raw["description"])
    return out


def _subset(f: FieldDef, allowed: Any, at: str) -> dict[str, Any]:
    """``[a, b]`` or ``{values: [a, b], default: a}``, spelled as the field spells its values."""
    default = None
    if isinstance(allowed, dict):
        default, allowed = allowed.get("default"), allowed.get("values")
    if not isinstance(allowed, list) or not allowed:
        raise MetadataError(f"{at}: list the available values")
    values = []
    for v in allowed:
        pv = f.picklist_value(str(v))
        if pv is None:
            raise MetadataError(f"{at}: {v!r} is not a value of the field")
        values.append(pv.value)
    if default is not None:
        if str(default).lower() not in {v.lower() for v in values}:
            raise MetadataError(f"{at}: the default {default!r} is not one of the available values")
        default = next(v for v in values if v.lower() == str(default).lower())
    return {"values": values, "default": default}
