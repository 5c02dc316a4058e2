"""sObject Collections (``/composite/sobjects``): create, update, upsert, delete and retrieve up to 200 records
in one call (salesforce-api.md §2.7).

The HTTP status is 200 even when items fail; each item carries ``statusCode`` errors. With ``allOrNone`` the whole
call is one transaction: when any item fails it is rolled back, the failing items keep their own errors and every
other item reports ``ALL_OR_NONE_OPERATION_ROLLED_BACK`` (django asserts all-or-nothing outcomes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from keel.api import describe as D
from keel.api.errors import error, item_errors
from keel.api.reads import field_list, select_all
from keel.api.routing import ApiCall, Reply, method_not_allowed, not_found
from keel.errors import ROLLED_BACK, BatchError, ErrorDetail, KeelError, RowResult
from keel.records import delete_many, save_many, upsert_many
from keel.storage import ids

MAX_RECORDS = 200


class _Rollback(Exception):
    """Raised inside the transaction to undo an all-or-none call."""


def route(call: ApiCall, rest: list[str]) -> Reply:
    m = call.method
    if not rest:
        if m == "POST":
            return save(call, create=True)
        if m == "PATCH":
            return save(call, create=False)
        if m == "DELETE":
            return delete(call)
        raise method_not_allowed(call, "POST, PATCH, DELETE")
    if len(rest) == 1:
        if m in ("POST", "GET"):
            return retrieve(call, rest[0])
        raise method_not_allowed(call, "GET, POST")
    if len(rest) == 2:
        if m == "PATCH":
            return upsert(call, rest[0], rest[1])
        raise method_not_allowed(call, "PATCH")
    raise not_found()


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _records(call: ApiCall) -> tuple[list[dict[str, Any]], bool]:
    body = call.json_object()
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise error("JSON_PARSER_ERROR", "The request body needs a 'records' array of objects.")
    if len(records) > MAX_RECORDS:
        raise error("EXCEEDED_ID_LIMIT", f"Record limit exceeded: at most {MAX_RECORDS} records per request.")
    return records, _flag(body.get("allOrNone", False))


def _run(call: ApiCall, count: int, all_or_none: bool,
         work: Callable[[Connection, list[RowResult]], None]) -> list[RowResult]:
    """Run ``work`` in one transaction; with ``all_or_none`` undo it if any item failed."""
    results = [RowResult(i) for i in range(count)]
    try:
        with call.writing() as conn:
            work(conn, results)
            if all_or_none and any(r.errors for r in results):
                if call.conn is not None:  # inside /composite: its transaction decides
                    raise BatchError(results)
                raise _Rollback
    except _Rollback:
        pass
    if all_or_none and any(r.errors for r in results):
        for r in results:
            if not r.errors:
                r.errors.append(ErrorDetail(ROLLED_BACK, "Record rolled back because not all records were valid "
                                            "and the request was using AllOrNone header", (), r.index))
            r.id = None if r.created else r.id
    return results


def _place(results: list[RowResult], positions: Sequence[int], sub: Sequence[RowResult]) -> None:
    for pos, r in zip(positions, sub, strict=True):
        results[pos] = RowResult(pos, r.id, r.created, [ErrorDetail(e.code, e.message, e.fields, pos)
                                                       for e in r.errors])


def _groups(records: list[dict[str, Any]], results: list[RowResult], call: ApiCall, *, create: bool,
            ) -> dict[str, list[int]]:
    """Items by object type, in first-seen order; items without a usable type fail on their own."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        attrs = rec.get("attributes")
        typ = attrs.get("type") if isinstance(attrs, dict) else None
        if not typ and not create:
            rid = next((v for k, v in rec.items() if k.lower() == "id"), None)
            if isinstance(rid, str):
                try:
                    found = call.ctx.schema().find_by_prefix(ids.split(rid)[0])
                    typ = found.api_name if found else None
                except KeelError:
                    typ = None
        if not typ:
            results[i].errors.append(ErrorDetail("INVALID_TYPE", "Must specify a type in attributes", (), i))
            continue
        try:
            _, obj = D.visible_object(call, str(typ))
        except KeelError:
            results[i].errors.append(ErrorDetail("INVALID_TYPE", f"sObject type '{typ}' is not supported.", (), i))
            continue
        groups.setdefault(obj.api_name, []).append(i)
    return groups


def _strip(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "attributes"}


def save(call: ApiCall, *, create: bool) -> Reply:
    records, aon = _records(call)

    def work(conn: Connection, results: list[RowResult]) -> None:
        for obj, positions in _groups(records, results, call, create=create).items():
            drafts = []
            for i in positions:
                d = _strip(records[i])
                has_id = any(k.lower() == "id" and v for k, v in d.items())
                if create and has_id:
                    results[i].errors.append(ErrorDetail("INVALID_FIELD", "cannot specify Id in an insert call",
                                                         ("Id",), i))
                elif not create and not has_id:
                    results[i].errors.append(ErrorDetail("MISSING_ARGUMENT", "Id not specified in an update call",
                                                         ("Id",), i))
                drafts.append(d)
            ok = [(i, d) for i, d in zip(positions, drafts, strict=True) if not results[i].errors]
            if not ok:
                continue
            sub = save_many(call.ctx, obj, [d for _, d in ok], all_or_none=False, conn=conn)
            _place(results, [i for i, _ in ok], sub)

    results = _run(call, len(records), aon, work)
    return Reply(200, [_item(r) for r in results])


def _item(r: RowResult, *, upsert: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.id if not r.errors else None, "success": not r.errors,
                           "errors": item_errors(r.errors)}
    if out["id"] is None:
        del out["id"]
    if upsert:
        out["created"] = bool(r.created) and not r.errors
    return out


def upsert(call: ApiCall, obj_name: str, field: str) -> Reply:
    records, aon = _records(call)
    _, obj = D.visible_object(call, obj_name)
    f = obj.find_field(field)
    if f is None or not (f.type == "id" or f.external_id or f.unique):
        raise not_found(f"Provided external ID field does not exist or is not accessible: {field}")

    def work(conn: Connection, results: list[RowResult]) -> None:
        drafts = [_strip(r) for r in records]
        try:
            sub = upsert_many(call.ctx, obj.api_name, drafts, f.api_name, all_or_none=False, conn=conn)
        except BatchError as e:
            sub = e.results
        _place(results, range(len(drafts)), sub)

    results = _run(call, len(records), aon, work)
    return Reply(200, [_item(r, upsert=True) for r in results])


def delete(call: ApiCall) -> Reply:
    raw = call.params.get("ids", "")
    record_ids = [x.strip() for x in raw.split(",") if x.strip()]
    if not record_ids:
        raise error("MISSING_ARGUMENT", "ids was not specified", ["ids"])
    if len(record_ids) > MAX_RECORDS:
        raise error("EXCEEDED_ID_LIMIT", f"Record limit exceeded: at most {MAX_RECORDS} ids per request.")
    aon = _flag(call.params.get("allOrNone", "false"))
    schema = call.ctx.schema()

    def work(conn: Connection, results: list[RowResult]) -> None:
        groups: dict[str, list[int]] = {}
        for i, rid in enumerate(record_ids):
            results[i].id = rid
            try:
                obj = schema.find_by_prefix(ids.split(rid)[0])
            except KeelError as e:
                results[i].errors.append(ErrorDetail(e.code, e.message, (), i))
                continue
            if obj is None:
                results[i].errors.append(ErrorDetail("MALFORMED_ID", f"Invalid id: {rid}", (), i))
                continue
            groups.setdefault(obj.api_name, []).append(i)
        for obj_name, positions in groups.items():
            sub = delete_many(call.ctx, obj_name, [record_ids[i] for i in positions], all_or_none=False, conn=conn)
            for pos, r in zip(positions, sub, strict=True):
                results[pos].errors.extend(ErrorDetail(e.code, e.message, e.fields, pos) for e in r.errors)
                results[pos].id = r.id or record_ids[pos]

    results = _run(call, len(record_ids), aon, work)
    return Reply(200, [{"id": record_ids[r.index], "success": not r.errors, "errors": item_errors(r.errors)}
                       for r in results])


def retrieve(call: ApiCall, obj_name: str) -> Reply:
    _, obj = D.visible_object(call, obj_name)
    if call.method == "POST":
        body = call.json_object()
        wanted, fields_raw = body.get("ids"), body.get("fields")
    else:
        wanted = [x for x in call.params.get("ids", "").split(",") if x]
        fields_raw = call.params.get("fields")
    if not isinstance(wanted, list) or not wanted:
        raise error("MISSING_ARGUMENT", "ids was not specified", ["ids"])
    if len(wanted) > 2000:
        raise error("EXCEEDED_ID_LIMIT", "at most 2000 ids per request")
    if not fields_raw:
        raise error("MISSING_ARGUMENT", "fields was not specified", ["fields"])
    fields = field_list(call, obj, fields_raw if isinstance(fields_raw, list) else str(fields_raw))
    canon: list[str | None] = []
    for raw in wanted:
        try:
            canon.append(ids.encode(obj.key_prefix, ids.decode(str(raw), obj.key_prefix)))
        except KeelError:
            canon.append(None)
    good = sorted({c for c in canon if c})
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(good), 500):
        part = good[start:start + 500]
        in_list = ", ".join(f"'{x}'" for x in part)
        for rec in select_all(call, f"SELECT {', '.join(fields)} FROM {obj.api_name} WHERE Id IN ({in_list})"):
            found[str(rec["Id"])] = rec
    return Reply(200, [found.get(c) if c else None for c in canon])
