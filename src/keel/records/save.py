"""``save_many``: the one path by which records are created and updated.

Inside one transaction: check access, coerce, apply defaults, run before-save hooks, validate (required, unique,
picklists, lookups, validation rules), write with executemany (COPY on PostgreSQL for big batches), write field
history, recompute roll-ups, run after-save hooks, and write outbox events. Every error of every row is collected
before anything is written, so a caller sees them all at once. With ``all_or_none`` (the default) one bad row
rolls back the batch; otherwise good rows commit and bad rows are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import nullcontext
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import ROLLED_BACK, BatchError, ErrorDetail, KeelError, RowResult
from keel.metadata.model import SchemaSnapshot
from keel.metadata.types import FieldValueError
from keel.records import fastpath, recordtypes, rules, validate, write
from keel.records.gcpause import gc_paused
from keel.records.hooks import RowError, RowState
from keel.records.prepare import WritePlan, format_auto_number, write_plan
from keel.storage import ids
from keel.storage.engine import savepoint
from keel.storage.system import next_values

if TYPE_CHECKING:
    from keel.context import Context

Draft = Mapping[str, Any]
MAX_ATTEMPTS = 3


class Batch:
    """Rows of one call with their results; failing a row removes it from every later step."""

    def __init__(self, count: int) -> None:
        self.results = [RowResult(index=i) for i in range(count)]
        self.rows: list[RowState] = []
        self.failures = 0  # errors recorded; prune has nothing to do while it has not changed
        self._pruned_at = 0

    def fail(self, index: int, code: str, message: str, fields: Sequence[str] = ()) -> None:
        self.results[index].errors.append(ErrorDetail(code, message, tuple(fields), index))
        self.failures += 1

    def prune(self) -> None:
        if self.failures == self._pruned_at:
            return
        self._pruned_at = self.failures
        self.rows = [r for r in self.rows if not self.results[r.index].errors]

    @property
    def failed(self) -> bool:
        return self.failures > 0


def save_many(ctx: Context, obj_name: str, drafts: Sequence[Draft], *, all_or_none: bool = True,
              conn: Connection | None = None, live: AbstractSet[str] = frozenset()) -> list[RowResult]:
    """Create (no ``Id``) or update (with ``Id``) records; return one result per draft, in order.

    ``live`` holds the 18-character ids of records the caller wrote earlier in ``conn``'s transaction and that
    the actor may reference: lookups to them need no query. A flow's child records point at the rows that
    triggered it, inserted moments before; checking 10,000 such parents was a third of the children's save."""
    with gc_paused(len(drafts)):
        if conn is None:
            with ctx.db.transaction() as c:
                return _save(ctx, c, obj_name, drafts, all_or_none, own=True, live=live)
        return _save(ctx, conn, obj_name, drafts, all_or_none, live=live)


def upsert_many(ctx: Context, obj_name: str, drafts: Sequence[Draft], external_id: str, *,
                all_or_none: bool = True, conn: Connection | None = None) -> list[RowResult]:
    """Match drafts on an external-id field (or ``Id``): matches update, the rest insert."""
    with gc_paused(len(drafts)):
        if conn is None:
            with ctx.db.transaction() as c:
                return _upsert(ctx, c, obj_name, drafts, external_id, all_or_none)
        return _upsert(ctx, conn, obj_name, drafts, external_id, all_or_none)


def _upsert(ctx: Context, conn: Connection, obj_name: str, drafts: Sequence[Draft], external_id: str,
            all_or_none: bool) -> list[RowResult]:
    schema = ctx.schema(conn)
    obj = schema.get_object(obj_name)
    key_field = obj.get_field(external_id)
    if key_field.api_name != "Id" and not (key_field.external_id or key_field.unique):
        raise KeelError(f"{key_field.api_name} is not an external id or unique field on {obj.api_name}.",
                        code="INVALID_FIELD", fields=[key_field.api_name])
    matches = validate.match_external_ids(conn, schema, obj, key_field, drafts)
    prepared: list[dict[str, Any]] = []
    pre_errors: dict[int, ErrorDetail] = {}
    for i, d in enumerate(drafts):
        row = {k: v for k, v in d.items() if k.lower() != "id"}
        hit = matches.get(i)
        if isinstance(hit, list):
            pre_errors[i] = ErrorDetail("MULTIPLE_RECORDS_FOUND" if len(hit) > 1 else "NOT_FOUND",
                                        f"{key_field.api_name} matches {len(hit)} records: {', '.join(hit)}",
                                        (key_field.api_name,), i)
        elif hit is not None:
            row["Id"] = hit
            if key_field.api_name != "Id":
                row.pop(next((k for k in row if k.lower() == key_field.key), ""), None)
        elif key_field.api_name == "Id":
            pre_errors[i] = ErrorDetail("NOT_FOUND", "No record matches the given Id.", ("Id",), i)
        prepared.append(row)
    good = [i for i in range(len(drafts)) if i not in pre_errors]
    if pre_errors and all_or_none:
        results = [RowResult(i, errors=[pre_errors[i]] if i in pre_errors else
                             [ErrorDetail(ROLLED_BACK, "Rolled back because another record failed.", (), i)])
                   for i in range(len(drafts))]
        raise BatchError(results)
    sub = _save(ctx, conn, obj_name, [prepared[i] for i in good], all_or_none)
    out = [RowResult(i, errors=[pre_errors[i]]) if i in pre_errors else RowResult(i) for i in range(len(drafts))]
    for pos, r in zip(good, sub, strict=True):
        out[pos] = RowResult(pos, r.id, r.created, [ErrorDetail(e.code, e.message, e.fields, pos) for e in r.errors])
    return out


def _save(ctx: Context, conn: Connection, obj_name: str, drafts: Sequence[Draft], all_or_none: bool, *,
          own: bool = False, live: AbstractSet[str] = frozenset()) -> list[RowResult]:
    """``own``: the transaction is this call's own, so an all-or-none failure rolls all of it back and the write
    needs no savepoint of its own (two statements less for every single-record save)."""
    schema = ctx.schema(conn)
    obj = schema.get_object(obj_name)
    plan = write_plan(schema, obj, ctx.db.dialect)
    batch = Batch(len(drafts))
    if not drafts:
        return []
    if ctx.depth > ctx.settings.automation_depth_limit:
        raise KeelError(f"Automation saved records more than {ctx.settings.automation_depth_limit} levels deep; "
                        "a flow is probably updating records in a loop.", code="AUTOMATION_LOOP")
    owner = ids.encode("005", ctx.actor.user_id)
    _coerce(ctx, plan, drafts, batch, owner)
    updates = [r for r in batch.rows if r.pk is not None]
    if updates:
        validate.load_prior(ctx, conn, schema, obj, updates, batch)
        batch.prune()
    for r in batch.rows:
        if r.prior is None:
            if not r.changed:  # rows from a generated coercer come with their defaults
                _apply_defaults(plan, r, owner)
        else:
            merged = dict(r.prior)
            merged.update(r.values)
            r.changed = {k for k, v in r.values.items() if r.prior.get(k) != v}
            r.values = merged
    _compose_names(plan, batch.rows)
    record_types: dict[str, list[recordtypes.RecordTypeRow]] = {}
    recordtypes.refuse_direct_writes(ctx, obj, batch)
    recordtypes.apply_defaults(conn, schema, obj, batch.rows, record_types)
    fctx = rules.apply_formula_defaults(ctx, conn, schema, plan, batch.rows, None)
    hooks = ctx.hooks
    if hooks is not None and batch.rows:
        _run_hook(batch, lambda rows: hooks.before_save(ctx, conn, obj, rows))
        batch.prune()
    write.allocate(conn, plan, batch.rows)
    validate.validate(ctx, conn, schema, plan, batch, live)
    batch.prune()
    recordtypes.check(conn, schema, obj, batch, record_types)
    rules.run_validation_rules(ctx, conn, schema, plan, batch, fctx)
    batch.prune()
    if batch.failed and all_or_none:
        validate.unique(conn, schema, plan, batch)  # complete the report before rolling back
        raise BatchError(_rolled_back(batch))
    if batch.rows:
        _number_new(conn, plan, batch.rows)
        driver_error = getattr(conn.dialect.dbapi, "OperationalError", sa.exc.OperationalError)
        try:
            _write_and_finish(ctx, conn, schema, plan, batch, all_or_none, savepoints=not (own and all_or_none))
        except (sa.exc.OperationalError, driver_error) as e:
            if _out_of_space(e):
                raise KeelError("The database is out of space; nothing in this batch was saved. Free space and "
                                "try again.", code="STORAGE_LIMIT_EXCEEDED") from e
            raise
    for r in batch.rows:
        res = batch.results[r.index]
        assert r.pk is not None
        res.id = r.public_id or ids.encode(obj.key_prefix, r.pk)
        res.created = r.prior is None
    return batch.results


def _write_checked(ctx: Context, conn: Connection, schema: SchemaSnapshot, plan: WritePlan, batch: Batch) -> bool:
    """Write under a savepoint. If a unique index refuses a row, find every offending row, report them, and
    write the rest; returns False when rows failed that way."""
    if not plan.unique:
        # Nothing to report per row: a refused write propagates, and the caller's savepoint undoes it.
        write.write_rows(ctx, conn, schema, plan, batch.rows)
        return True
    integrity = conn.dialect.dbapi.IntegrityError if conn.dialect.dbapi else Exception
    try:
        with savepoint(conn):
            write.write_rows(ctx, conn, schema, plan, batch.rows)
        return True
    except (sa.exc.IntegrityError, integrity):
        validate.unique(conn, schema, plan, batch)
        if not batch.failed:
            raise
        batch.prune()
        if batch.rows:
            with savepoint(conn):
                write.write_rows(ctx, conn, schema, plan, batch.rows)
        return False


def _write_and_finish(ctx: Context, conn: Connection, schema: SchemaSnapshot, plan: WritePlan, batch: Batch,
                      all_or_none: bool, *, savepoints: bool = True) -> None:
    """Write, recompute roll-ups and run after-save hooks under one savepoint.

    When an after-save action fails a row in a partial save, everything the batch wrote is rolled back and the
    remaining rows are written again without it, as Salesforce retries a partial DML: a failed row never leaves
    its own write (or its automation's writes) behind. Three attempts at most, like Salesforce.
    """
    obj = plan.obj
    hooks = ctx.hooks
    for _attempt in range(MAX_ATTEMPTS):
        try:
            with savepoint(conn) if savepoints else nullcontext():
                if not _write_checked(ctx, conn, schema, plan, batch) and all_or_none:
                    raise BatchError(_rolled_back(batch))
                rules.recompute_rollups(conn, schema, obj, [r for r in batch.rows if r.prior is None or r.changed],
                                        by_changes=True)
                if hooks is not None and batch.rows:
                    hooks.after_save(ctx, conn, obj, batch.rows)
            return
        except RowError as e:
            batch.fail(e.index, e.code, e.message, e.fields)
            if all_or_none:
                raise BatchError(_rolled_back(batch)) from None
            batch.prune()
            if not batch.rows:
                return
    for r in batch.rows:
        batch.fail(r.index, "UNKNOWN_EXCEPTION", "Too many batch retries: automation kept failing other records.")
    batch.rows = []


def _out_of_space(e: Exception) -> bool:
    """A full disk: SQLite says so (and, having rolled back, then loses our savepoint); PostgreSQL uses 53100."""
    orig = getattr(e, "orig", e)
    text = str(orig).lower()
    return "disk is full" in text or "no such savepoint" in text or getattr(orig, "sqlstate", None) == "53100"


def _run_hook(batch: Batch, call: Any) -> None:
    try:
        call(batch.rows)
    except RowError as e:
        batch.fail(e.index, e.code, e.message, e.fields)


def _rolled_back(batch: Batch) -> list[RowResult]:
    for res in batch.results:
        if not res.errors:
            res.errors.append(ErrorDetail(ROLLED_BACK, "Rolled back because another record in the batch failed.",
                                          (), res.index))
    return batch.results


def _coerce(ctx: Context, plan: WritePlan, drafts: Sequence[Draft], batch: Batch, owner: str) -> None:
    obj = plan.obj
    access = ctx.actor.access
    can_create = access.can(obj.api_name, "create")
    can_edit = access.can(obj.api_name, "edit")
    # Per batch, each distinct input key is resolved once: to (api name, coercer) or to an error.
    resolved: dict[str, tuple[str | None, Any]] = {}

    def one(i: int, draft: Draft) -> RowState | None:
        values: dict[str, Any] = {}
        pk: int | None = None
        bad: list[tuple[str, str, str]] = []
        for key, raw in draft.items():
            hit = resolved.get(key)
            if hit is None:
                hit = resolved[key] = _resolve_key(ctx, plan, key)
            name, how = hit
            if name is None:
                if how[0]:
                    bad.append(how)
                continue
            if name == "Id":
                if raw in (None, ""):
                    continue
                try:
                    pk = ids.decode(str(raw), obj.key_prefix)
                except KeelError as e:
                    bad.append((e.code, e.message, "Id"))
                continue
            if how is None:
                values[name] = raw
                continue
            try:
                values[name] = how(raw)
            except FieldValueError as e:
                bad.append((e.code, e.message, name))
        if pk is None and not can_create:
            bad.append(("INSUFFICIENT_ACCESS_OR_READONLY", f"You do not have permission to create {obj.label} "
                        "records.", ""))
        elif pk is not None and not can_edit:
            bad.append(("INSUFFICIENT_ACCESS_OR_READONLY", f"You do not have permission to edit {obj.label} records.",
                        ""))
        if bad:
            for code, message, field in bad:
                batch.fail(i, code, message, [field] if field else [])
            return None
        return RowState(index=i, values=values, pk=pk)

    if can_create and len(drafts) >= 8:
        # Drafts grouped by their keys (a CSV with empty cells has a few shapes): each shape of new records gets
        # its generated coercer; a batch of very varied shapes is not worth generating code for.
        shapes: dict[tuple[str, ...], list[int]] = {}
        for i, draft in enumerate(drafts):
            shapes.setdefault(tuple(draft), []).append(i)
        if len(shapes) <= 8:
            rows: list[RowState] = []
            for keys, indexes in shapes.items():
                fast = _fast_coercer(ctx, plan, keys, resolved, owner)
                if fast is not None:
                    rows += fast(drafts, indexes, one)
                else:
                    rows += [r for i in indexes if (r := one(i, drafts[i])) is not None]
            if len(shapes) > 1:
                rows.sort(key=attrgetter("index"))
            batch.rows = rows
            return
    for i, draft in enumerate(drafts):
        r = one(i, draft)
        if r is not None:
            batch.rows.append(r)


def _fast_coercer(ctx: Context, plan: WritePlan, keys: tuple[str, ...], resolved: dict[str, tuple[str | None, Any]],
                  owner: str) -> fastpath.DraftCoercer | None:
    """The generated coercer for new records with these keys, when every key is a field the actor may write;
    None sends these drafts through the generic loop."""
    slots: list[fastpath.Slot] = []
    for key in keys:
        hit = resolved.get(key)
        if hit is None:
            hit = resolved[key] = _resolve_key(ctx, plan, key)
        name, how = hit
        if name is None or name in ("Id", "__version__"):
            return None
        slots.append((key, name, how, plan.text_limit(name) if how is not None else None))
    return plan.draft_coercer(slots, owner)


def _resolve_key(ctx: Context, plan: WritePlan, key: str) -> tuple[str | None, Any]:
    """``(api name, coercer or None)`` for a writable key, or ``(None, (code, message, field))`` to refuse it."""
    obj = plan.obj
    if key == "__version__":  # optimistic concurrency token from forms
        return key, None
    f = plan.by_key.get(key.lower())
    if f is None:
        if key == "attributes":
            return None, ("", "", "")
        return None, ("INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.api_name}", key)
    if f.type == "id":
        return "Id", None
    editable = not f.system_managed and (ctx.actor.is_system or ctx.actor.access.field_editable(obj.api_name,
                                                                                                 f.api_name))
    if not editable:
        return None, ("INVALID_FIELD_FOR_INSERT_UPDATE",
                      f"Unable to create/update fields: {f.api_name}. Please check the security settings of this "
                      "field and verify that it is read/write for your profile or permission set.", f.api_name)
    return f.api_name, plan.coercers.get(f.api_name)


def _apply_defaults(plan: WritePlan, r: RowState, owner: str) -> None:
    values = r.values
    for name, value in plan.defaults:
        if name not in values:
            values[name] = value
    if values.get("OwnerId") is None:
        values["OwnerId"] = owner
    r.changed = set(values)


def _compose_names(plan: WritePlan, rows: Sequence[RowState]) -> None:
    f = plan.composite
    if f is None:
        return
    for r in rows:
        if r.prior is not None and not (r.changed & set(f.parts)):
            continue
        name = " ".join(str(r.values[p]) for p in f.parts if r.values.get(p) not in (None, ""))
        r.values["Name"] = name[: f.length or 255] or None
        r.changed.add("Name")


def _number_new(conn: Connection, plan: WritePlan, rows: Sequence[RowState]) -> None:
    """Auto-numbers come from a sequence row written in the same transaction, so two saves never share a number."""
    new = [r for r in rows if r.prior is None]
    if not new:
        return
    for f in plan.auto_numbers:
        first = next_values(conn, f"auto:{plan.obj.table}:{f.column}", len(new))
        fmt = f.display_format or "{0}"
        for n, r in enumerate(new):
            r.values[f.api_name] = format_auto_number(fmt, first + n)
