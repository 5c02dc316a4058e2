"""Versions, resources, limits, describeGlobal, sObject describe and the OpenAPI document, from metadata.

Describe is generated from the ``SchemaSnapshot`` seen through the caller's access: objects the user cannot read
are absent (404 on describe), unreadable fields are left out, and ``createable``/``updateable`` say what this user
may write. django-salesforce indexes every key with ``[]``, so each key of salesforce-api.md §2.1–§2.2 is always
present (``null``/``false`` when it does not apply).
"""

from __future__ import annotations

from typing import Any

from keel.api.routing import ApiCall, Reply, not_found
from keel.context import Access, Actor
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.recordtypes import MASTER_ID, record_types
from keel.metadata.types import TYPES, effective_type, sf_type
from keel.records.recordtypes import load_rows

MIN_VERSION, MAX_VERSION = 31, 66
_SEASONS = ("Winter", "Spring", "Summer")


def versions_list() -> list[dict[str, str]]:
    """Every supported version, ascending: django takes the last entry as ``MAX``."""
    out = []
    for v in range(MIN_VERSION, MAX_VERSION + 1):
        k = v - 59
        label = f"{_SEASONS[k % 3]} '{24 + k // 3:02d}"
        out.append({"label": label, "url": f"/services/data/v{v}.0", "version": f"{v}.0"})
    return out


def resources(call: ApiCall) -> Reply:
    p = call.prefix
    names = ("sobjects", "query", "queryAll", "search", "limits", "composite", "process", "recent", "tooling",
             "analytics", "jobs", "connect")
    body = {n: f"{p}/{n}" for n in names if n not in ("recent", "tooling", "analytics", "connect")}
    body["identity"] = f"{call.base_url}/id/{call.session.org_id}/{call.session.user_id}"
    body["openapi"] = f"{p}/openapi.json"
    return Reply(200, body)


def composite_resources(call: ApiCall) -> Reply:
    """``GET /composite``: the composite resources this server runs (Salesforce also lists ``graph``; Keel has none)."""
    p = f"{call.prefix}/composite"
    return Reply(200, {"tree": f"{p}/tree", "batch": f"{p}/batch", "sobjects": f"{p}/sobjects"})


def limits(call: ApiCall) -> Reply:
    per_min = call.ctx.settings.api_requests_per_minute
    daily = max(per_min * 60 * 24, 15000)
    used = call.api_usage
    return Reply(200, {
        "DailyApiRequests": {"Max": daily, "Remaining": max(daily - used, 0)},
        "PerMinuteApiRequests": {"Max": per_min, "Remaining": per_min},
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        "DataStorageMB": {"Max": 1_000_000, "Remaining": 1_000_000},
        "FileStorageMB": {"Max": 1_000_000, "Remaining": 1_000_000},
        "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
    })


def readable(actor: Actor, obj: ObjectDef) -> bool:
    return actor.is_system or actor.access.can(obj.api_name, "read")


def visible_object(call: ApiCall, name: str) -> tuple[SchemaSnapshot, ObjectDef]:
    """The object named in a URL, or 404 ``NOT_FOUND`` when it is unknown or unreadable to this user."""
    schema = call.ctx.schema()
    obj = schema.find_object(name)
    if obj is None or not obj.queryable or not readable(call.ctx.actor, obj):
        raise not_found(f"The requested resource does not exist: sObject type '{name}' is not supported.")
    return schema, obj


def _can(actor: Actor, obj: ObjectDef, action: str) -> bool:
    return actor.is_system or actor.access.can(obj.api_name, action)


def global_entry(call: ApiCall, obj: ObjectDef) -> dict[str, Any]:
    actor = call.ctx.actor
    url = f"{call.prefix}/sobjects/{obj.api_name}"
    return {
        "activateable": False, "associateEntityType": None, "associateParentEntity": None,
        "createable": _can(actor, obj, "create"), "custom": obj.custom, "customSetting": False,
        "deepCloneable": False, "deletable": _can(actor, obj, "delete"), "deprecatedAndHidden": False,
        "feedEnabled": False, "hasSubtypes": False, "isInterface": False, "isSubtype": False,
        "keyPrefix": obj.key_prefix or None, "label": obj.label, "labelPlural": obj.plural_label,
        "layoutable": True, "mergeable": False, "mruEnabled": False, "name": obj.api_name,
        "queryable": obj.queryable, "replicateable": True, "retrieveable": True, "searchable": True,
        "triggerable": True, "undeletable": _can(actor, obj, "delete"), "updateable": _can(actor, obj, "edit"),
        "urls": {"sobject": url, "describe": f"{url}/describe", "rowTemplate": f"{url}/{{ID}}"},
    }


def describe_global(call: ApiCall) -> Reply:
    actor = call.ctx.actor
    objs = [global_entry(call, o) for o in call.ctx.schema() if o.queryable and readable(actor, o)]
    return Reply(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objs})


def basic_info(call: ApiCall, obj: ObjectDef) -> Reply:
    return Reply(200, {"objectDescribe": global_entry(call, obj), "recentItems": []})


def _field_readable(access: Access, actor: Actor, obj: ObjectDef, f: FieldDef) -> bool:
    return actor.is_system or f.type == "id" or access.field_readable(obj.api_name, f.api_name)


def field_entry(obj: ObjectDef, f: FieldDef, editable: bool, can_create: bool, can_edit: bool) -> dict[str, Any]:
    t = sf_type(f)
    et = effective_type(f)
    ft = TYPES.get(et)
    writable = editable and not f.system_managed
    numeric = t in ("double", "currency", "percent", "int")
    text_like = t in ("string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox")
    length = (f.length or (ft.default_length if ft else None) or 255) if text_like else 0
    precision = (f.precision or 18) if numeric else 0
    scale = (f.scale if f.scale is not None else (2 if t in ("currency", "percent") else 0)) if numeric else 0
    default = f.default if f.default is not None and not isinstance(f.default, dict) else None
    formula = f.default.get("formula") if isinstance(f.default, dict) else None
    picklist = [{"active": v.active, "defaultValue": v.default, "label": v.label, "validFor": None, "value": v.value}
                for v in f.values] if t in ("picklist", "multipicklist") else []
    nillable = not f.required and f.type not in ("id", "checkbox", "formula", "rollup", "auto_number") and \
        f.api_name not in ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp",
                           "OwnerId", "IsDeleted")
    if f.type == "composite" or (f.api_name == "Name" and not f.required):
        nillable = f.type != "composite" and nillable
    return {
        "aggregatable": bool(ft and ft.groupable) or numeric, "aiPredictionField": False,
        "autoNumber": f.type == "auto_number", "byteLength": length * 3, "calculated": f.type in ("formula", "rollup"),
        "calculatedFormula": f.formula, "cascadeDelete": f.type == "master_detail", "caseSensitive": False,
        "compoundFieldName": None, "controllerName": f.controlling_field,
        "createable": writable and can_create, "custom": f.custom, "defaultValue": default,
        "defaultValueFormula": formula, "defaultedOnCreate": f.default is not None or f.type in ("id", "checkbox")
        or (f.standard and f.api_name != "Name"),
        "dependentPicklist": f.controlling_field is not None, "deprecatedAndHidden": False,
        "digits": 0, "displayLocationInDecimal": False, "encrypted": False, "externalId": f.external_id,
        "extraTypeInfo": None, "filterable": bool(ft.filterable) if ft else True, "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": f.blank_as == "zero" if f.type == "formula" else False,
        "groupable": bool(ft.groupable) if ft else False, "highScaleNumber": False, "htmlFormatted": False,
        "idLookup": f.type == "id" or f.external_id or f.unique or f.api_name == "Name",
        "inlineHelpText": f.help_text, "label": f.label, "length": length, "mask": None, "maskType": None,
        "name": f.api_name, "nameField": f.api_name == "Name", "namePointing": len(f.reference_to) > 1,
        "nillable": nillable, "permissionable": not f.required and not f.standard,
        "picklistValues": picklist, "polymorphicForeignKey": len(f.reference_to) > 1,
        "precision": precision, "queryByDistance": False, "referenceTargetField": None,
        "referenceTo": list(f.reference_to) if t == "reference" else [],
        "relationshipName": f.relationship_name if t == "reference" else None,
        "relationshipOrder": (0 if f.type == "master_detail" else None),
        "restrictedDelete": f.on_delete == "restrict", "restrictedPicklist": f.restricted, "scale": scale,
        "searchPrefilterable": False, "soapType": ft.soap_type if ft else "xsd:string",
        "sortable": bool(ft.sortable) if ft else True, "type": t, "unique": f.unique,
        "updateable": writable and can_edit,
        "writeRequiresMasterRead": False,
    }


def describe(call: ApiCall, schema: SchemaSnapshot, obj: ObjectDef) -> Reply:
    actor = call.ctx.actor
    access = actor.access
    can_create, can_edit = _can(actor, obj, "create"), _can(actor, obj, "edit")
    fields = []
    for f in obj.fields:
        if not _field_readable(access, actor, obj, f):
            continue
        editable = actor.is_system or access.field_editable(obj.api_name, f.api_name)
        fields.append(field_entry(obj, f, editable, can_create, can_edit))
    children = []
    for rel in schema.child_relationships(obj):
        child = schema.find_object(rel.child_object)
        if child is None or not readable(actor, child):
            continue
        children.append({"cascadeDelete": rel.cascade_delete, "childSObject": rel.child_object,
                          "deprecatedAndHidden": False, "field": rel.field, "junctionIdListNames": [],
                          "junctionReferenceTo": [], "relationshipName": rel.name, "restrictedDelete": False})
    body = global_entry(call, obj)
    body.update({
        "actionOverrides": [], "childRelationships": children, "compactLayoutable": True,
        "defaultImplementation": None, "extendedBy": None, "extendsInterfaces": None, "fields": fields,
        "implementedBy": None, "implementsInterfaces": None, "listviewable": None, "lookupLayoutable": None,
        "namedLayoutInfos": [], "networkScopeFieldName": None,
        "recordTypeInfos": record_type_infos(call, schema, obj),
        "searchLayoutable": True, "sobjectDescribeOption": "FULL", "supportedScopes": [
            {"label": "All " + obj.plural_label.lower(), "name": "everything"},
            {"label": "My " + obj.plural_label.lower(), "name": "mine"}],
    })
    return Reply(200, body)


def record_type_infos(call: ApiCall, schema: SchemaSnapshot, obj: ObjectDef) -> list[dict[str, Any]]:
    """Salesforce's shape: the object's active record types, then the master type (every object has it; it is
    the default mapping when no declared type is the default). ``available`` says the caller may create records
    of the type; Keel has no per-profile record type assignment, so it follows the object's create permission."""
    declared = {d.developer_name.lower(): d for d in record_types(obj)}
    rows = []
    if declared:
        with call.ctx.db.read() as conn:
            rows = [r for r in load_rows(conn, schema, obj.api_name) if r.active]
    available = _can(call.ctx.actor, obj, "create")
    default = next((r.id for r in rows if (d := declared.get(r.developer_name.lower())) and d.default), MASTER_ID)
    # ``urls`` stays empty: Keel serves no per-record-type page layouts (``describe/layouts``).
    out = [{"active": True, "available": available, "defaultRecordTypeMapping": r.id == default,
            "developerName": r.developer_name, "master": False, "name": r.label, "recordTypeId": r.id, "urls": {}}
           for r in rows]
    out.append({"active": True, "available": True, "defaultRecordTypeMapping": default == MASTER_ID,
                "developerName": "Master", "master": True, "name": "Master", "recordTypeId": MASTER_ID, "urls": {}})
    return out


def openapi(call: ApiCall) -> Reply:
    from keel.api.openapi import document

    return Reply(200, document(call))
