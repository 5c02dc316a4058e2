"""An OpenAPI 3.1 document for the caller's view of the org, generated from metadata.

Objects and fields the caller cannot read are absent, like in describe. Tools (and a schemathesis run) use it to
exercise every sObject endpoint.
"""

from __future__ import annotations

from typing import Any

from keel.api.describe import readable
from keel.api.routing import ApiCall
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.types import effective_type

_JSON_TYPES: dict[str, dict[str, Any]] = {
    "number": {"type": ["number", "null"]}, "currency": {"type": ["number", "null"]},
    "percent": {"type": ["number", "null"]}, "checkbox": {"type": "boolean"},
    "date": {"type": ["string", "null"], "format": "date"},
    "datetime": {"type": ["string", "null"], "format": "date-time"},
    "time": {"type": ["string", "null"]},
}
_ERRORS = {"$ref": "#/components/schemas/Errors"}


def _field_schema(f: FieldDef) -> dict[str, Any]:
    t = effective_type(f)
    out = dict(_JSON_TYPES.get(t, {"type": ["string", "null"]}))
    if f.length and t in ("text", "textarea", "longtext", "email", "phone", "url", "picklist"):
        out["maxLength"] = f.length
    if f.values and t == "picklist" and f.restricted:
        out["enum"] = [v.value for v in f.values] + [None]
    if f.help_text or f.label:
        out["description"] = f.help_text or f.label
    if f.system_managed:
        out["readOnly"] = True
    return out


def _object_schema(call: ApiCall, obj: ObjectDef) -> dict[str, Any]:
    actor = call.ctx.actor
    props = {f.api_name: _field_schema(f) for f in obj.fields
             if f.type == "id" or actor.is_system or actor.access.field_readable(obj.api_name, f.api_name)}
    return {"type": "object", "properties": props}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": desc}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


def document(call: ApiCall) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Errors": {"type": "array", "items": {"type": "object", "required": ["message", "errorCode"],
                                              "properties": {"message": {"type": "string"},
                                                             "errorCode": {"type": "string"},
                                                             "fields": {"type": "array",
                                                                        "items": {"type": "string"}}}}},
        "SaveResult": {"type": "object", "properties": {"id": {"type": "string"}, "success": {"type": "boolean"},
                                                        "errors": {"type": "array"}}},
        "QueryResult": {"type": "object", "required": ["totalSize", "done", "records"],
                        "properties": {"totalSize": {"type": "integer"}, "done": {"type": "boolean"},
                                       "records": {"type": "array"},
                                       "nextRecordsUrl": {"type": ["string", "null"]}}},
    }
    common_errors = {"400": _resp("Bad request", _ERRORS), "401": _resp("Invalid session", _ERRORS),
                     "403": _resp("Refused", _ERRORS), "404": _resp("Not found", _ERRORS)}
    paths: dict[str, Any] = {
        "/query": {"get": {"operationId": "query", "parameters": [
            {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _resp("First page", {"$ref": "#/components/schemas/QueryResult"}),
                          **common_errors}}},
        "/sobjects": {"get": {"operationId": "describeGlobal", "responses": {"200": _resp("Objects"),
                                                                             **common_errors}}},
        "/limits": {"get": {"operationId": "limits", "responses": {"200": _resp("Limits"), **common_errors}}},
    }
    id_param = {"name": "id", "in": "path", "required": True,
                "schema": {"type": "string", "minLength": 15, "maxLength": 18}}
    for obj in call.ctx.schema():
        if not obj.queryable or not readable(call.ctx.actor, obj):
            continue
        name = obj.api_name
        schemas[name] = _object_schema(call, obj)
        ref = {"$ref": f"#/components/schemas/{name}"}
        paths[f"/sobjects/{name}"] = {
            "get": {"operationId": f"{name}_info", "responses": {"200": _resp("Basic information"),
                                                                **common_errors}},
            "post": {"operationId": f"{name}_create", "requestBody": {"content": {"application/json": {
                "schema": ref}}}, "responses": {"201": _resp("Created", {"$ref": "#/components/schemas/SaveResult"}),
                                                **common_errors}},
        }
        paths[f"/sobjects/{name}/describe"] = {"get": {"operationId": f"{name}_describe",
                                                       "responses": {"200": _resp("Describe"), **common_errors}}}
        paths[f"/sobjects/{name}/{{id}}"] = {
            "parameters": [id_param],
            "get": {"operationId": f"{name}_retrieve", "responses": {"200": _resp("The record", ref),
                                                                    **common_errors}},
            "patch": {"operationId": f"{name}_update", "requestBody": {"content": {"application/json": {
                "schema": ref}}}, "responses": {"204": _resp("Updated"), **common_errors}},
            "delete": {"operationId": f"{name}_delete", "responses": {"204": _resp("Deleted"), **common_errors}},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Keel Salesforce-compatible REST API", "version": call.version},
        "servers": [{"url": f"{call.base_url}{call.prefix}"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas},
        "paths": paths,
    }
