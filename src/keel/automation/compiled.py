"""Flows compiled for one object at one schema snapshot and one automation version.

A bulk load calls the hooks once per batch, and each batch used to look up (and for before-save fields, per row)
every formula again. The compiled form lives in the snapshot's own cache under the automation version, so a
deploy or a schema change gives the next save a fresh plan and an old snapshot takes its plans with it.

``Records`` is the other half: the record mapping formulas and templates see (values plus the public ``Id``) is
built once per row per hook call and shared by every flow and action of that call, instead of once per use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from keel.automation.definitions import Action, Flow
from keel.automation.registry import Loaded
from keel.formula import FormulaContext, compile_python
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.records.hooks import RowState
from keel.storage import ids

Formula = Callable[[Mapping[str, Any], FormulaContext], Any]
Coercer = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class CompiledFlow:
    flow: Flow
    condition: Formula | None
    sets: tuple[tuple[str, Formula, Coercer | None], ...]  # before-save: field, formula, the field's coercer


@dataclass(frozen=True, slots=True)
class ObjectFlows:
    """The active flows of one object; ``before`` are those with before-save field updates."""

    before: tuple[CompiledFlow, ...]
    after: tuple[CompiledFlow, ...]


NO_FLOWS = ObjectFlows((), ())


def _cache(schema: SchemaSnapshot) -> dict[Any, Any]:
    """Automation's share of the snapshot's cache: plans live exactly as long as the snapshot they compiled for."""
    return cast(dict[Any, Any], schema.cache.setdefault("automation", {}))


def object_flows(loaded: Loaded, schema: SchemaSnapshot, obj: ObjectDef, dialect: str) -> ObjectFlows:
    flows = loaded.flows_for(obj.key)
    if not flows:
        return NO_FLOWS
    cache = _cache(schema)
    key = ("flows", loaded.version, obj.key, dialect)
    hit = cache.get(key)
    if isinstance(hit, ObjectFlows):
        return hit
    from keel.records.prepare import write_plan

    coercers = write_plan(schema, obj, dialect).coercers
    compiled = tuple(
        CompiledFlow(f, compile_python(f.condition, obj, schema, context_kind="flow", returns="checkbox")
                     if f.condition else None,
                     tuple((name, compile_python(text, obj, schema, context_kind="flow"), coercers.get(name))
                           for name, text in f.set_fields.items()))
        for f in flows)
    out = ObjectFlows(tuple(c for c in compiled if c.sets), compiled)
    cache[key] = out
    return out


def action_values(schema: SchemaSnapshot, obj: ObjectDef, a: Action) -> tuple[tuple[str, Formula], ...]:
    """The ``values`` formulas of a create or update action, compiled once per snapshot."""
    spec = a.spec.get("values") or {}
    cache = _cache(schema)
    key = ("values", obj.key, tuple((str(k), str(v)) for k, v in spec.items()))
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = tuple((str(k), compile_python(str(v), obj, schema, context_kind="flow"))
                                        for k, v in spec.items())
    return cast(tuple[tuple[str, Formula], ...], hit)


class Records:
    """The record mapping of each row of one hook call, shared by every flow and action: the row's own
    ``values``, with ``Id`` once the row has a primary key.

    Before-save field updates write into it, so a later flow's condition sees an earlier flow's changes. It is not
    a copy: a 10,000-row save with flows used to copy every row's values once per hook call."""

    __slots__ = ("_new_ctx", "fctx", "obj")

    def __init__(self, obj: ObjectDef, fctx: FormulaContext) -> None:
        self.obj = obj
        self.fctx = fctx
        self._new_ctx: FormulaContext | None = None

    def of(self, r: RowState) -> dict[str, Any]:
        rec = r.values
        if r.pk is not None and "Id" not in rec:
            rec["Id"] = r.public_id = r.public_id or ids.CanonicalId(ids.encode(self.obj.key_prefix, r.pk))
        return rec

    def context(self, r: RowState) -> FormulaContext:
        """The row's formula context; new rows share one (they have no prior values to tell apart)."""
        if r.prior is not None:
            return self.fctx.for_row(r.prior)
        if self._new_ctx is None:
            self._new_ctx = self.fctx.for_row(None)
        return self._new_ctx

    def prior_of(self, r: RowState) -> dict[str, Any] | None:
        if r.prior is None:
            return None
        rec = dict(r.prior)
        if r.pk is not None:
            rec["Id"] = ids.encode(self.obj.key_prefix, r.pk)
        return rec


def entered(cf: CompiledFlow, records: Records, rows: Sequence[RowState]) -> tuple[list[RowState], list[RowState]]:
    """(rows meeting the condition, those of them that did not meet it before this save)."""
    cond = cf.condition
    if cond is None:
        return list(rows), [r for r in rows if r.prior is None]
    holding: list[RowState] = []
    new: list[RowState] = []
    of, context = records.of, records.context
    for r in rows:
        if not cond(of(r), context(r)):
            continue
        holding.append(r)
        if r.prior is not None:
            prior = records.prior_of(r)
            assert prior is not None
            if cond(prior, records.fctx.for_row(prior)):
                continue
        new.append(r)
    return holding, new
