"""``/sobjects``: describe, single-record CRUD, upsert and get by external id, and the ``updated``/``deleted``
replication windows (salesforce-api.md §2.2–§2.3).

Writes go through the one record lifecycle (``save_many``/``upsert_many``/``delete_many``) as the calling user;
reads go through SOQL. Status codes: create 201, update and delete 204 with no body, upsert 201/200 (204 before
v46), several external-id matches 300 with the matching record URLs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_plus

import sqlalchemy as sa

from keel.api import describe as D
from keel.api import password
from keel.api.backend import security_key
from keel.api.errors import error
from keel.api.groupcommit import PendingCreate
from keel.api.reads import by_field, field_list, readable_fields, select_all
from keel.api.routing import DEFERRED, ApiCall, Reply, method_not_allowed, not_found
from keel.errors import ROLLED_BACK, BatchError, ErrorDetail, RowResult
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for
from keel.records import delete_many, save_many, upsert_many
from keel.storage import ids
from keel.storage import system as S


def route(call: ApiCall, rest: list[str]) -> Reply:
    if not rest:
        if call.method not in ("GET", "HEAD"):
            raise method_not_allowed(call, "GET, HEAD")
        return D.describe_global(call)
    schema, obj = D.visible_object(call, rest[0])
    m = call.method
    if len(rest) == 1:
        if m in ("GET", "HEAD"):
            return D.basic_info(call, obj)
        if m == "POST":
            return create(call, obj)
        raise method_not_allowed(call, "GET, HEAD, POST")
    seg = rest[1]
    low = seg.lower()
    if len(rest) == 2:
        if low == "describe":
            return _get(call, lambda: D.describe(call, schema, obj))
        if low == "updated":
            return _get(call, lambda: updated(call, obj))
        if low == "deleted":
            return _get(call, lambda: deleted(call, schema, obj))
        if low == "id" and m == "POST":
            return create(call, obj)
        if m in ("GET", "HEAD"):
            return retrieve(call, obj, seg)
        if m == "PATCH":
            return update(call, obj, seg)
        if m == "DELETE":
            return delete(call, obj, seg)
        raise method_not_allowed(call, "GET, HEAD, PATCH, DELETE")
    if len(rest) == 3 and obj.api_name == "User" and rest[2].lower() == "password":
        return password.route(call, seg)
    if len(rest) == 3:
        value = unquote_plus(rest[2])  # simple-salesforce quote_plus-es the value: '+' is a space
        f = obj.find_field(seg)
        if f is None or not (f.type == "id" or f.external_id or f.unique or f.api_name == "Name"):
            raise not_found(f"Provided external ID field does not exist or is not accessible: {seg}")
        if m in ("GET", "HEAD"):
            return get_by_external_id(call, obj, f.api_name, value)
        if m in ("PATCH", "POST"):
            return upsert(call, obj, f.api_name, value)
        if m == "DELETE":
            return delete_by_external_id(call, obj, f.api_name, value)
        raise method_not_allowed(call, "GET, HEAD, PATCH, POST, DELETE")
    raise not_found()


def _get(call: ApiCall, fn: Any) -> Reply:
    if call.method not in ("GET", "HEAD"):
        raise method_not_allowed(call, "GET, HEAD")
    reply: Reply = fn()
    return reply


def _draft(call: ApiCall) -> dict[str, Any]:
    body = call.json_object()
    return {k: v for k, v in body.items() if k != "attributes"}


def _raise_first(results: list[Any]) -> None:
    if any(r.errors for r in results):
        raise BatchError(results)


def create(call: ApiCall, obj: ObjectDef) -> Reply:
    draft = _draft(call)
    if any(k.lower() == "id" for k in draft):
        raise error("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check the "
                    "security settings of this field and verify that it is read/write for your profile or "
                    "permission set.", ["Id"])
    if call.conn is None and (call.group_commit is not None or call.deferred is not None):
        ctx = call.ctx
        key = (obj.api_name, security_key(ctx.actor), ctx.actor.session_id)

        def save(drafts: Sequence[dict[str, Any]]) -> list[RowResult]:
            return save_many(ctx, obj.api_name, drafts, all_or_none=False)

        if call.deferred is not None:
            call.deferred.append(PendingCreate(key, draft, save))
            return DEFERRED
        assert call.group_commit is not None
        return created(call.group_commit.submit(key, draft, save))
    with call.writing() as conn:
        results = save_many(call.ctx, obj.api_name, [draft], conn=conn)
    return created(results[0])


def created(result: RowResult) -> Reply:
    """The 201 of a single-record create, or raises its errors as the API reports them."""
    _raise_first([result])
    return Reply(201, {"id": result.id, "success": True, "errors": []})


def _check_id(obj: ObjectDef, record_id: str) -> str:
    pk = ids.decode(record_id, obj.key_prefix)
    return ids.encode(obj.key_prefix, pk)


def retrieve(call: ApiCall, obj: ObjectDef, record_id: str) -> Reply:
    rid = _check_id(obj, record_id)
    fields = field_list(call, obj, call.params.get("fields"))
    rows = select_all(call, f"SELECT {', '.join(fields)} FROM {obj.api_name} WHERE Id = '{rid}'")
    if not rows:
        _missing(call, obj, rid)
    return Reply(200, rows[0])


def _missing(call: ApiCall, obj: ObjectDef, rid: str) -> None:
    gone = select_all(call, f"SELECT Id FROM {obj.api_name} WHERE Id = '{rid}' AND IsDeleted = true",
                      query_all=True)
    if gone:
        raise error("ENTITY_IS_DELETED", "entity is deleted")
    raise not_found()


def update(call: ApiCall, obj: ObjectDef, record_id: str) -> Reply:
    rid = _check_id(obj, record_id)
    draft = _draft(call)
    draft = {k: v for k, v in draft.items() if k.lower() != "id"}
    draft["Id"] = rid
    with call.writing() as conn:
        results = save_many(call.ctx, obj.api_name, [draft], conn=conn)
    _raise_first(results)
    return Reply(204)


def delete(call: ApiCall, obj: ObjectDef, record_id: str) -> Reply:
    rid = _check_id(obj, record_id)
    with call.writing() as conn:
        results = delete_many(call.ctx, obj.api_name, [rid], conn=conn)
    _raise_first(results)
    return Reply(204)


def _matches(call: ApiCall, obj: ObjectDef, field: str, value: str, fields: list[str]) -> list[dict[str, Any]]:
    f = obj.get_field(field)
    if f.type == "id":
        value = _check_id(obj, value)
    return by_field(call, obj, f, value, fields, limit=2001)


def _several(call: ApiCall, obj: ObjectDef, rows: list[dict[str, Any]]) -> Reply:
    return Reply(300, [f"{call.prefix}/sobjects/{obj.api_name}/{r['Id']}" for r in rows])


def get_by_external_id(call: ApiCall, obj: ObjectDef, field: str, value: str) -> Reply:
    fields = field_list(call, obj, call.params.get("fields"))
    rows = _matches(call, obj, field, value, fields)
    if not rows:
        raise not_found()
    if len(rows) > 1:
        return _several(call, obj, rows)
    return Reply(200, rows[0])


def upsert(call: ApiCall, obj: ObjectDef, field: str, value: str) -> Reply:
    draft = _draft(call)
    fdef = obj.get_field(field)
    for k in list(draft):
        if k.lower() == fdef.key and fdef.type != "id":
            if str(draft[k]) != value:
                raise error("INVALID_FIELD", f"{fdef.api_name} is specified in the URL; do not send it in the "
                            "body with another value.", [fdef.api_name])
            draft.pop(k)
    if fdef.type == "id" and value in ("", "null"):
        if call.method != "POST" and call.method != "PATCH":
            raise method_not_allowed(call, "POST, PATCH")
        return create(call, obj)
    existing = _matches(call, obj, field, value, ["Id"]) if value else []
    if len(existing) > 1:
        return _several(call, obj, existing)
    draft[fdef.api_name] = value if fdef.type != "id" else _check_id(obj, value)
    with call.writing() as conn:
        results = upsert_many(call.ctx, obj.api_name, [draft], fdef.api_name, conn=conn)
    _raise_first(results)
    r = results[0]
    body: dict[str, Any] = {"id": r.id, "success": True, "errors": [], "created": r.created}
    if r.created:
        return Reply(201, body)
    if _version_num(call.version) < 46:
        return Reply(204)
    return Reply(200, body)


def delete_by_external_id(call: ApiCall, obj: ObjectDef, field: str, value: str) -> Reply:
    rows = _matches(call, obj, field, value, ["Id"])
    if not rows:
        raise not_found()
    if len(rows) > 1:
        return _several(call, obj, rows)
    return delete(call, obj, str(rows[0]["Id"]))


def _version_num(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return 0.0


# --- replication windows -----------------------------------------------------------------------------------


def parse_window_date(raw: str | None, name: str) -> dt.datetime:
    """Dates of ``updated``/``deleted`` in every form clients send: ``…+00:00``, ``…Z``, ``…+0000``, a ``+`` that
    form decoding turned into a space, and simple-salesforce's naive ``2024-01-02T03:04:05:`` (read as UTC)."""
    if not raw:
        raise error("MISSING_ARGUMENT", f"{name} was not specified", [name])
    text = raw.strip().rstrip(":")
    if len(text) > 19 and text[19] == " ":
        text = text[:19] + "+" + text[20:]
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise error("INVALID_REPLICATION_DATE", f"{name} is not a valid date-time: {raw}", [name]) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _window(call: ApiCall) -> tuple[dt.datetime, dt.datetime]:
    start = parse_window_date(call.params.get("start"), "start")
    end = parse_window_date(call.params.get("end"), "end")
    if end < start:
        raise error("INVALID_REPLICATION_DATE", "end must be after start")
    now = call.ctx.clock()
    return start, min(end, now)


def _fmt(d: dt.datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}+0000"


def _soql_dt(d: dt.datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def updated(call: ApiCall, obj: ObjectDef) -> Reply:
    start, end = _window(call)
    latest = end
    rows = select_all(call, f"SELECT Id FROM {obj.api_name} WHERE SystemModstamp >= {_soql_dt(start)} "
                      f"AND SystemModstamp <= {_soql_dt(latest)} ORDER BY SystemModstamp")
    return Reply(200, {"ids": [r["Id"] for r in rows], "latestDateCovered": _fmt(latest)})


def deleted(call: ApiCall, schema: SchemaSnapshot, obj: ObjectDef) -> Reply:
    """Deleted records in the window, from the recycle bin, limited to records this user may see."""
    start, end = _window(call)
    latest = end
    rb = S.recycle_bin
    t = table_for(schema, obj)
    q = (sa.select(rb.c.record_id, rb.c.deleted_date).select_from(rb.join(t, t.c.id == rb.c.record_id))
         .where(rb.c.object_id == obj.id, rb.c.deleted_date >= start, rb.c.deleted_date <= latest)
         .order_by(rb.c.deleted_date))
    actor = call.ctx.actor
    if not actor.is_system:
        pred = actor.access.record_filter(obj, t, "read")
        if pred is not None:
            q = q.where(pred)
    with call.reading() as conn:
        rows = conn.execute(q).all()
        earliest = conn.execute(sa.select(sa.func.min(rb.c.deleted_date)).where(rb.c.object_id == obj.id)).scalar()
    out = [{"id": ids.encode(obj.key_prefix, int(r[0])), "deletedDate": _fmt(_as_dt(r[1]))} for r in rows]
    return Reply(200, {"deletedRecords": out, "earliestDateAvailable": _fmt(_as_dt(earliest) if earliest else start),
                       "latestDateCovered": _fmt(latest)})


def _as_dt(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v
    return dt.datetime.fromisoformat(str(v))


def item_result(r: Any, *, upsert: bool = False) -> dict[str, Any]:
    """One entry of a DML result array (collections), with ``statusCode`` errors."""
    from keel.api.errors import item_errors

    out: dict[str, Any] = {"id": r.id, "success": not r.errors, "errors": item_errors(r.errors)}
    if upsert:
        out["created"] = bool(r.created) and not r.errors
    return out


__all__ = ["ROLLED_BACK", "ErrorDetail", "item_result", "readable_fields", "route"]
