"""``<Object>Share`` sObjects (``AccountShare``, ``Position__Share``): shares as records, mirrored into
``keel_share``.

The sObject is what administrators and integrations query and write (Salesforce's field names: ``AccountId`` /
``AccountAccessLevel`` on standard objects, ``ParentId`` / ``AccessLevel`` on custom ones, plus ``UserOrGroupId``
and ``RowCause``). Its OWD is controlled-by-parent through the master-detail to the shared record, so who may see
a share row is decided by the same predicate compiler. ``keel_share`` stays the single indexed table the
visibility predicate probes; ``SecurityHooks`` keeps it in step inside the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.package import parse_object

LEVELS = {"Read": 1, "Edit": 2, "All": 3}


@dataclass(frozen=True, slots=True)
class ShareShape:
    share: ObjectDef
    parent: ObjectDef
    parent_field: FieldDef
    level_field: FieldDef


def share_name(obj: ObjectDef) -> str:
    return obj.api_name.removesuffix("__c") + "__Share" if obj.custom else obj.api_name + "Share"


def share_shape(schema: SchemaSnapshot, obj: ObjectDef) -> ShareShape | None:
    """The shape of ``obj`` if it is a share sObject, else None."""
    key = f"share_shape:{obj.key}"
    cache = schema.cache
    if key in cache:
        hit: ShareShape | None = cache[key]
        return hit
    shape = None
    if obj.api_name.endswith("Share"):
        md = next((f for f in obj.fields if f.type == "master_detail"), None)
        level = next((f for f in obj.fields if f.api_name.endswith("AccessLevel")), None)
        parent = schema.find_object(md.reference_to[0]) if md is not None else None
        if md is not None and level is not None and parent is not None and share_name(parent) == obj.api_name:
            shape = ShareShape(obj, parent, md, level)
    cache[key] = shape
    return shape


def share_object_of(schema: SchemaSnapshot, obj: ObjectDef) -> ShareShape | None:
    """The share sObject of a shareable object, if it exists."""
    share = schema.find_object(share_name(obj))
    return share_shape(schema, share) if share is not None else None


def custom_share_object(obj: ObjectDef) -> ObjectDef:
    """The desired ``<Name>__Share`` definition for a custom object (planned and applied like any metadata)."""
    doc = {
        "object": "KeelShareTemplate",
        "label": f"{obj.label} Share", "plural_label": f"{obj.label} Shares",
        "sharing": "controlled_by_parent",
        "name_field": {"type": "auto_number", "format": "SH-{0000000}"},
        "fields": [
            {"name": "ParentId", "type": "master_detail", "to": obj.api_name, "relationship_name": "Parent",
             "child_relationship_name": "Shares"},
            {"name": "UserOrGroupId", "type": "text", "length": 18, "required": True},
            {"name": "AccessLevel", "type": "picklist", "values": list(LEVELS), "restricted": True,
             "required": True},
            {"name": "RowCause", "type": "text", "length": 40, "default": "Manual"},
            {"name": "IncludeSubordinates", "type": "checkbox"},
        ],
    }
    return replace(parse_object(doc, standard=True), api_name=share_name(obj), custom=True)
