"""After-save actions, run batch-wise for the rows a flow (or a scheduled path, or an approval step) fired on.

Record actions go through ``save_many`` in the save's transaction as the audited system actor, one level deeper,
so the lifecycle's depth cap turns a flow loop into a clear AUTOMATION_LOOP error. A child that fails validation
fails the triggering row (CANNOT_EXECUTE_FLOW_TRIGGER) and, in an all-or-none save, rolls the whole save back,
outbox rows included: nothing is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.engine import Connection

from keel.automation import outbox
from keel.automation.compiled import Records, action_values
from keel.automation.definitions import Action
from keel.automation.support import flow_system_context, formula_context
from keel.automation.templates import Templates, read_for_templates
from keel.errors import ROLLED_BACK, BatchError, RowResult
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.records import save_many
from keel.records.hooks import RowError, RowState
from keel.storage import ids

if TYPE_CHECKING:
    from keel.context import Context

FLOW_ERROR = "CANNOT_EXECUTE_FLOW_TRIGGER"
# submit_for_approval is injected (approvals import actions, not the other way round).
Submitter = Callable[["Context", Connection, str, ObjectDef, Sequence[int]], None]


class ActionRunner:
    def __init__(self, templates: Templates, submit: Submitter | None = None) -> None:
        self.templates = templates
        self.submit = submit

    def run(self, ctx: Context, conn: Connection, obj: ObjectDef, source: str, actions: Sequence[Action],
            rows: Sequence[RowState], records: Records | None = None) -> None:
        """Run ``actions`` in order for ``rows``; ``ctx`` is the running user (templates read as them, formulas
        see them as ``$User``). ``records`` is the hook call's shared record cache, when the caller has one."""
        if not rows or not actions:
            return
        schema = ctx.schema(conn)
        if records is None:
            records = Records(obj, formula_context(ctx, conn, schema))
        sys_ctx: Context | None = None
        for a in actions:
            if a.kind in ("update", "create", "note"):
                if sys_ctx is None:
                    sys_ctx = flow_system_context(ctx, conn, source)
                if a.kind == "note":
                    self._note(ctx, sys_ctx, conn, schema, obj, source, a, rows, records)
                else:
                    self._record_action(sys_ctx, conn, schema, obj, source, a, rows, records)
            elif a.kind == "email":
                self._email(ctx, conn, schema, obj, source, a, rows, records)
            elif a.kind == "webhook":
                self._webhook(ctx, conn, schema, obj, source, a, rows, records)
            elif a.kind == "submit_for_approval" and self.submit is not None:
                self.submit(ctx, conn, str(a.spec.get("process")), obj, [r.pk for r in rows if r.pk is not None])

    @staticmethod
    def _values(schema: SchemaSnapshot, obj: ObjectDef, a: Action, rows: Sequence[RowState],
                records: Records) -> list[dict[str, Any]]:
        fns = action_values(schema, obj, a)
        of, context = records.of, records.context
        # formula results to values save_many coerces: Decimal stays, blank text is a null (inlined: per row)
        return [{k: None if (v := fn(rec, c)) == "" else v for k, fn in fns}
                for rec, c in ((of(r), context(r)) for r in rows)]

    def _record_action(self, ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, source: str,
                       a: Action, rows: Sequence[RowState], records: Records) -> None:
        """One ``save_many`` per target object for every row of the batch: the children of a 10,000-row load
        go through the child object's lifecycle as one batch, not 10,000."""
        values = self._values(schema, obj, a, rows, records)
        if a.kind == "create":
            target = str(a.spec["object"])
            # the triggering rows were written moments ago in this transaction: children may point at them
            _save(ctx, conn, target, values, rows, source, live={records.of(r)["Id"] for r in rows})
            return
        field = str(a.spec.get("target", "self"))
        by_obj: dict[str, list[tuple[dict[str, Any], RowState]]] = {}
        for v, r in zip(values, rows, strict=True):
            rid = records.of(r).get("Id" if field == "self" else field)
            if not rid:
                continue
            tobj = schema.find_by_prefix(str(rid)[:3])
            name = obj.api_name if field == "self" else (tobj.api_name if tobj else
                                                         obj.get_field(field).reference_to[0])
            by_obj.setdefault(name, []).append(({"Id": rid, **v}, r))
        for name, pairs in by_obj.items():
            _save(ctx, conn, name, [p[0] for p in pairs], [p[1] for p in pairs], source)

    def _rendered(self, ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef,
                  texts: Sequence[str], rows: Sequence[RowState], records: Records) -> Mapping[int, Mapping[str, Any]]:
        paths = self.templates.paths(texts)
        pks = [r.pk for r in rows if r.pk is not None]
        # rows all created by this save: what the user just wrote is in memory (their pks are new, so distinct)
        mem = {r.pk: records.of(r) for r in rows if r.pk is not None} \
            if all(r.prior is None for r in rows) else None
        return read_for_templates(ctx, conn, schema, obj, pks, paths, mem, plain=self.templates.all_plain(texts))

    def _email(self, ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, source: str,
               a: Action, rows: Sequence[RowState], records: Records) -> None:
        to = a.spec.get("to") or []
        to = [to] if isinstance(to, str) else list(to)
        cc = a.spec.get("cc") or []
        cc = [cc] if isinstance(cc, str) else list(cc)
        subject, body = str(a.spec.get("subject", "")), str(a.spec.get("body", ""))
        found = self._rendered(ctx, conn, schema, obj, [*to, *cc, subject, body], rows, records)
        renderer = self.templates.renderer
        to_r, cc_r = [renderer(t) for t in to], [renderer(t) for t in cc]
        subject_r, body_r = renderer(subject), renderer(body)
        sender = a.spec.get("from")
        split = outbox.split_addresses
        msgs: list[tuple[int | None, dict[str, Any]]] = []
        for r in rows:
            rec = found.get(r.pk or 0, {})
            rcpt = split([t(rec) for t in to_r])
            if not rcpt:
                continue
            payload: dict[str, Any] = {"to": rcpt, "subject": subject_r(rec).strip(), "body": body_r(rec),
                                       "source": source}
            if cc_r:  # empty keys are left out: the sender reads them with .get, and each row is smaller
                payload["cc"] = split([t(rec) for t in cc_r])
            if sender:
                payload["from"] = sender
            msgs.append((r.pk, payload))
        outbox.enqueue_tuples(conn, outbox.batch_rows(obj.id, msgs, outbox.bind_datetime(conn, ctx.clock())))

    def _webhook(self, ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, source: str,
                 a: Action, rows: Sequence[RowState], records: Records) -> None:
        body_t = a.spec.get("body")
        fields = [str(f) for f in a.spec.get("fields") or ["Name"]]
        texts = [str(body_t)] if body_t else ["{{ record." + f + " }}" for f in fields]
        found = self._rendered(ctx, conn, schema, obj, texts, rows, records)
        body_r = self.templates.renderer(str(body_t)) if body_t else None
        now = ctx.clock()
        keys = outbox.new_keys(len(rows))
        msgs = []
        for r, key in zip(rows, keys, strict=True):
            rec = found.get(r.pk or 0, {})
            if body_r is not None:
                body = body_r(rec)
            else:
                body = orjson.dumps({"source": source, "object": obj.api_name,
                                     "id": ids.encode(obj.key_prefix, r.pk or 0),
                                     "record": {f: rec.get(f) for f in fields}}, default=str).decode()
            payload = {"url": str(a.spec["url"]), "body": body, "source": source,
                       "secret": a.spec.get("secret"), "secret_env": a.spec.get("secret_env"),
                       "content_type": str(a.spec.get("content_type", "application/json"))}
            msgs.append(outbox.message(outbox.WEBHOOK, payload, now, object_id=obj.id, record_id=r.pk, key=key))
        outbox.enqueue(conn, msgs)

    def _note(self, ctx: Context, sys_ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef,
              source: str, a: Action, rows: Sequence[RowState], records: Records) -> None:
        title, body = str(a.spec.get("title", source)), str(a.spec.get("body", ""))
        found = self._rendered(ctx, conn, schema, obj, [title, body], rows, records)
        title_r, body_r = self.templates.renderer(title), self.templates.renderer(body)
        drafts = []
        for r in rows:
            rec = found.get(r.pk or 0, {})
            drafts.append({"Name": title_r(rec)[:80], "Body": body_r(rec),
                           "ParentId": ids.encode(obj.key_prefix, r.pk or 0)})
        _save(sys_ctx, conn, "Note", drafts, rows, source)


def _save(ctx: Context, conn: Connection, obj_name: str, drafts: list[dict[str, Any]], rows: Sequence[RowState],
          source: str, live: AbstractSet[str] = frozenset()) -> list[RowResult]:
    if not drafts:
        return []
    try:
        return save_many(ctx, obj_name, drafts, conn=conn, live=live)
    except BatchError as e:
        bad = next(((i, d) for i, res in enumerate(e.results) for d in res.errors if d.code != ROLLED_BACK), None)
        i, d = bad if bad is not None else (0, e.results[0].errors[0])
        raise RowError(rows[i].index, FLOW_ERROR,
                       f"{source}: {obj_name} {'update' if 'Id' in drafts[i] else 'create'} failed: "
                       f"{d.code}: {d.message}", d.fields, cause=d) from None
