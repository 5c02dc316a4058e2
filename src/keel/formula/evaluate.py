"""The Python back end: a typed tree becomes nested closures once, so evaluating a row walks no tree.

Used for default values, validation rules and flow conditions, where the record is in memory. Numbers are Decimal
(exact, as in Salesforce), datetimes naive UTC, and text values are never None inside a formula (blank text is '').
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from keel.formula.check import bind
from keel.formula.context import FormulaContext
from keel.formula.fn import ZERO, Closure, to_dec
from keel.formula.typed import (
    BOOLEAN,
    DATE,
    DATETIME,
    MULTIPICKLIST,
    NUMERIC,
    PICKLIST,
    RETURNS,
    TEXT,
    TIME,
    Checked,
    TCall,
    TField,
    TGlobal,
    TLit,
    TNode,
    memo,
)
from keel.metadata import values as V
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot

Compiled = Callable[[Mapping[str, Any], FormulaContext], Any]
_TEXTY = frozenset({TEXT, PICKLIST, MULTIPICKLIST})


def _reader(name: str, t: str, zero: bool) -> Closure:
    """Read one field of a record mapping, normalised to the formula's value type."""
    if t in NUMERIC:
        default = ZERO if zero else None

        def num(r: Mapping[str, Any], c: FormulaContext) -> Any:
            v = r.get(name)
            if v is None:
                return default
            return v if type(v) is Decimal else to_dec(v)

        return num
    if t in _TEXTY:
        def txt(r: Mapping[str, Any], c: FormulaContext) -> Any:
            v = r.get(name)
            return "" if v is None else v if type(v) is str else str(v)

        return txt
    if t == BOOLEAN:
        return lambda r, c: bool(r.get(name))
    if t in (DATE, DATETIME, TIME):
        return _temporal(name, t)
    return lambda r, c: r.get(name)


def _temporal(name: str, t: str) -> Closure:
    def read(r: Mapping[str, Any], c: FormulaContext) -> Any:
        v = r.get(name)
        if v is None or v == "":
            return None
        if t == DATE:
            if isinstance(v, dt.datetime):
                return v.date()
            return v if isinstance(v, dt.date) else V.parse_date(str(v))
        if t == DATETIME:
            if isinstance(v, str):
                return V.parse_datetime(v)
            if isinstance(v, dt.datetime) and v.tzinfo is not None:
                return v.astimezone(dt.UTC).replace(tzinfo=None)
            return v
        return v if isinstance(v, dt.time) else V.parse_time(str(v))

    return read


def _blank_of(t: str, zero: bool) -> Any:
    if t in _TEXTY:
        return ""
    if t == BOOLEAN:
        return False
    return ZERO if zero and t in NUMERIC else None


def _field(node: TField) -> Closure:
    f = node.field
    leaf: Closure
    if node.formula is not None:
        inner = compile_node(node.formula)
        leaf = inner
        if node.zero:
            def zeroed(r: Mapping[str, Any], c: FormulaContext) -> Any:
                v = inner(r, c)
                return ZERO if v is None else v

            leaf = zeroed
    else:
        leaf = _reader(f.api_name, node.type, node.zero)
    if not node.path:
        return leaf
    path = tuple((lk.relationship_name or "", lk.api_name, lk.reference_to[0]) for lk in node.path)
    missing = _blank_of(node.type, node.zero)

    def through_parents(r: Mapping[str, Any], c: FormulaContext) -> Any:
        cur: Mapping[str, Any] = r
        for rel, key, target in path:
            sub = cur.get(rel)
            if not isinstance(sub, Mapping):
                ident = cur.get(key)
                if ident is None or c.resolve_parent is None:
                    return missing
                sub = c.resolve_parent(target, ident)
                if sub is None:
                    return missing
            cur = sub
        return leaf(cur, c)

    return through_parents


def _global(node: TGlobal) -> Closure:
    read = _reader(node.field.api_name, node.type, False)
    if node.scope == "User":
        return lambda r, c: read(c.user, c)
    return lambda r, c: read(c.organization, c)


_VOLATILE = frozenset({"TODAY", "NOW", "ISNEW", "ISCHANGED", "PRIORVALUE"})


def _constant(node: TNode) -> bool:
    """True when the node's value depends on nothing (DATE(2000, 1, 1)): it is computed once, at compile time."""
    if isinstance(node, TLit):
        return True
    return (isinstance(node, TCall) and bool(node.args) and node.fn.name not in _VOLATILE
            and all(_constant(a) for a in node.args))


def compile_node(node: TNode) -> Closure:
    """Compile a typed tree into one closure ``(record, context) -> value``; constant parts are folded."""
    if isinstance(node, TCall) and _constant(node):
        folded = _compile(node)({}, FormulaContext())
        return lambda r, c: folded
    return _compile(node)


def _compile(node: TNode) -> Closure:
    if isinstance(node, TLit):
        value = node.value
        return lambda r, c: value
    if isinstance(node, TField):
        return _field(node)
    if isinstance(node, TGlobal):
        return _global(node)
    assert isinstance(node, TCall)
    fn = node.fn
    args = [compile_node(a) for a in node.args]
    if fn.lazy is not None:
        return fn.lazy(args, node.args, node.type)
    assert fn.py is not None
    impl = fn.py(tuple(a.type for a in node.args), node.type)
    if fn.nulls != "propagate":
        return _eager(impl, args, node.args)
    boolean = node.type == BOOLEAN
    if len(args) == 1:
        (a,) = args

        def one(r: Mapping[str, Any], c: FormulaContext) -> Any:
            v = a(r, c)
            if v is None:
                return False if boolean else None
            return impl(v)

        return one
    if len(args) == 2 and _constant(node.args[1]):
        a, y = args[0], args[1]({}, FormulaContext())
        if y is None:
            return lambda r, c: False if boolean else None

        def two_const(r: Mapping[str, Any], c: FormulaContext) -> Any:
            x = a(r, c)
            if x is None:
                return False if boolean else None
            return impl(x, y)

        return two_const
    if len(args) == 2:
        a, b = args

        def two(r: Mapping[str, Any], c: FormulaContext) -> Any:
            x = a(r, c)
            y = b(r, c)
            if x is None or y is None:
                return False if boolean else None
            return impl(x, y)

        return two

    def many(r: Mapping[str, Any], c: FormulaContext) -> Any:
        vals = [f(r, c) for f in args]
        if None in vals:
            return False if boolean else None
        return impl(*vals)

    return many


def _eager(impl: Callable[..., Any], args: list[Closure], nodes: tuple[TNode, ...]) -> Closure:
    if len(args) == 2 and _constant(nodes[1]):
        a, y = args[0], args[1]({}, FormulaContext())
        return lambda r, c: impl(a(r, c), y)
    if len(args) == 1:
        (a,) = args
        return lambda r, c: impl(a(r, c))
    if len(args) == 2:
        a, b = args
        return lambda r, c: impl(a(r, c), b(r, c))
    return lambda r, c: impl(*(f(r, c) for f in args))


def finisher(t: str, scale: int | None) -> Callable[[Any], Any]:
    """How a formula's result leaves the language: blank text is None, numbers are rounded to the scale."""
    if t == TEXT:
        return lambda v: v if v else None
    if t in NUMERIC and scale is not None:
        q = Decimal(1).scaleb(-scale)
        return lambda v: None if v is None else v.quantize(q, rounding=ROUND_HALF_UP)
    if t == BOOLEAN:
        return bool
    return lambda v: v


def compile_checked(checked: Checked, *, scale: int | None = None) -> Compiled:
    body = compile_node(checked.root)
    finish = finisher(checked.root.type, scale)
    return lambda r, c: finish(body(r, c))


def compile_python(text: str, obj: ObjectDef, schema: SchemaSnapshot, *, context_kind: str = "flow",
                   blank_as: str = "blank", returns: str | None = None, scale: int | None = None) -> Compiled:
    """A reusable ``(record, context) -> value`` for a formula; cached per snapshot (compile once, run per row)."""
    key = ("formula.py", obj.key, text, context_kind, blank_as, returns, scale)
    hit = memo(schema).get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    checked = bind(text, obj, schema, context_kind=context_kind, blank_as=blank_as, returns=returns)
    out = compile_checked(checked, scale=scale)
    memo(schema)[key] = out
    return out


def compile_field(field: FieldDef, obj: ObjectDef, schema: SchemaSnapshot) -> Compiled:
    """A formula field's value for an in-memory record, rounded to its scale as a query would return it."""
    if field.type != "formula":
        raise ValueError(f"{field.api_name} is not a formula field")
    return compile_python(field.formula or "", obj, schema, context_kind="field", blank_as=field.blank_as,
                          returns=field.returns, scale=field.scale)


def evaluate(expr_or_text: str | Checked, record: Mapping[str, Any], context: FormulaContext | None = None, *,
             obj: ObjectDef | None = None, schema: SchemaSnapshot | None = None, context_kind: str = "flow",
             blank_as: str = "blank", returns: str | None = None) -> Any:
    """Evaluate one formula against one record. For many rows, use ``compile_python`` once instead."""
    ctx = context or FormulaContext()
    if isinstance(expr_or_text, Checked):
        return compile_checked(expr_or_text)(record, ctx)
    if obj is None or schema is None:
        raise ValueError("evaluate(text, …) needs obj= and schema= to resolve field names")
    fn = compile_python(expr_or_text, obj, schema, context_kind=context_kind, blank_as=blank_as, returns=returns)
    return fn(record, ctx)


__all__ = ["RETURNS", "compile_checked", "compile_field", "compile_node", "compile_python", "evaluate"]
