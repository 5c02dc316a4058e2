"""The type checker: resolves names against the schema, types every node, and refuses formulas that refer to
themselves. It runs at definition time (plan, ``keel formula check``) so that errors reach the administrator with a
position and the expected and actual types, and at compile time for both back ends, which only accept typed trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from keel.errors import MetadataError
from keel.formula.ast import Binary, Call, Literal, Node, Ref, Unary
from keel.formula.errors import FormulaError, error_at
from keel.formula.fn import ArgError, Fn
from keel.formula.functions import FUNCTIONS, OPERATORS, UNARY
from keel.formula.parser import parse
from keel.formula.typed import (
    BOOLEAN,
    MULTIPICKLIST,
    NULL,
    NUMERIC,
    PICKLIST,
    RETURNS,
    TEXT,
    Checked,
    TCall,
    TField,
    TGlobal,
    TLit,
    TNode,
    TypeInfo,
    field_type,
    memo,
)
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot

MAX_DEPTH = 10
CONTEXT_KINDS = ("field", "validation", "default", "flow")
_GLOBALS = {"$user": "User", "$organization": "Organization"}
_NEVER_NULL_TYPES = frozenset({BOOLEAN, TEXT, PICKLIST, MULTIPICKLIST})


@dataclass
class _State:
    text: str
    obj: ObjectDef
    schema: SchemaSnapshot
    kind: str
    zero: bool
    stack: tuple[tuple[str, str], ...]
    depends: set[tuple[str, str]]
    change: bool = False
    globals_: bool = False


def bind(text: str, obj: ObjectDef, schema: SchemaSnapshot, *, context_kind: str = "field",
         blank_as: str | None = None, returns: str | None = None,
         _stack: tuple[tuple[str, str], ...] = ()) -> Checked:
    """Parse and type-check ``text`` on ``obj``; cached per snapshot because trees are immutable.

    ``blank_as`` defaults to ``zero`` for formula fields (Salesforce's default) and ``blank`` elsewhere.
    """
    if context_kind not in CONTEXT_KINDS:
        raise ValueError(f"context_kind must be one of {CONTEXT_KINDS}")
    if blank_as is None:
        blank_as = "zero" if context_kind == "field" else "blank"
    key = ("formula.bind", obj.key, text, context_kind, blank_as, returns, _stack)
    cache = memo(schema)
    hit = cache.get(key)
    if isinstance(hit, Checked):
        return hit
    st = _State(text, obj, schema, context_kind, blank_as == "zero", _stack, set())
    root = _node(st, parse(text), raw=False)
    if returns is not None:
        want = RETURNS.get(returns, returns)
        ok = root.type == want or root.type == NULL or (root.type in NUMERIC and want in NUMERIC)
        if not ok:
            raise error_at(text, root.pos, f"The formula returns {root.type} but {want} is expected",
                           expected=want, actual=root.type)
    out = Checked(text, root, frozenset(st.depends), st.change, st.globals_)
    cache[key] = out
    return out


def check(text: str, obj: ObjectDef, schema: SchemaSnapshot, *, returns: str | None = None,
          context_kind: str = "field", blank_as: str | None = None) -> TypeInfo:
    """Type-check a formula at definition time; raises ``FormulaError`` with position and types."""
    return bind(text, obj, schema, context_kind=context_kind, blank_as=blank_as, returns=returns).info


def describe_check(text: str, obj: ObjectDef, schema: SchemaSnapshot, *, context_kind: str = "field") -> str:
    """What ``keel formula check`` prints: the type, or the error with its position."""
    try:
        info = check(text, obj, schema, context_kind=context_kind)
    except FormulaError as exc:
        return f"Error at line {exc.line}, column {exc.column}: {exc.reason}"
    return f"{info.type}{'' if info.nullable else ' (never blank)'}"


def _node(st: _State, n: Node, *, raw: bool) -> TNode:
    if isinstance(n, Literal):
        v = n.value
        if v is None:
            return TLit(NULL, True, n.pos, None)
        if isinstance(v, bool):
            return TLit(BOOLEAN, False, n.pos, v)
        if isinstance(v, Decimal):
            return TLit("number", False, n.pos, v)
        return TLit(TEXT, False, n.pos, v)
    if isinstance(n, Ref):
        return _ref(st, n, raw=raw)
    if isinstance(n, Unary):
        if n.op == "+":
            inner = _node(st, n.operand, raw=False)
            if inner.type not in NUMERIC | {NULL}:
                raise error_at(st.text, n.operand.pos, f"unary + needs a number, not {inner.type}",
                               expected="number", actual=inner.type)
            return inner
        return _call(st, FUNCTIONS[UNARY[n.op]], (n.operand,), n.pos, n.op)
    if isinstance(n, Binary):
        return _call(st, FUNCTIONS[OPERATORS[n.op]], (n.left, n.right), n.pos, n.op)
    if isinstance(n, Call):
        fn = FUNCTIONS.get(n.name)
        if fn is None or fn.operator:
            raise error_at(st.text, n.pos, f"Unknown function {n.name}")
        return _call(st, fn, n.args, n.pos, n.name)
    raise error_at(st.text, n.pos, "unsupported syntax")  # pragma: no cover


def _call(st: _State, fn: Fn, raw_args: tuple[Node, ...], pos: int, shown: str) -> TNode:
    if st.kind not in fn.contexts:
        raise error_at(st.text, pos, f"{shown} is only allowed in {' and '.join(sorted(fn.contexts))} formulas, "
                                     f"not in a {st.kind} formula")
    n = len(raw_args)
    if n < fn.min_args or (fn.max_args is not None and n > fn.max_args):
        want = (str(fn.min_args) if fn.max_args == fn.min_args else
                f"at least {fn.min_args}" if fn.max_args is None else f"{fn.min_args} to {fn.max_args}")
        raise error_at(st.text, pos, f"{shown} takes {want} argument(s), got {n}: {fn.signature}")
    if fn.name in ("ISNEW", "ISCHANGED", "PRIORVALUE"):
        st.change = True
    args = tuple(_node(st, a, raw=fn.raw) for a in raw_args)
    try:
        ret = fn.typer(args)
    except ArgError as exc:
        where = raw_args[exc.index].pos if exc.index is not None and exc.index < n else pos
        raise error_at(st.text, where, f"{shown}: {exc.message}", expected=exc.expected, actual=exc.actual) from None
    # Text calls can give blank from blank inputs (TEXT of a blank number), so only booleans are never blank here.
    nullable = ret != BOOLEAN and (fn.name in _MAY_BLANK or any(a.nullable for a in args))
    return TCall(ret, nullable, pos, fn, args)


# Functions that can give blank from non-blank arguments (invalid dates, division by zero, …).
_MAY_BLANK = frozenset({"/", "^", "MOD", "SQRT", "EXP", "LN", "LOG", "VALUE", "DATE", "DATEVALUE",
                        "DATETIMEVALUE", "TIMEVALUE", "ADDMONTHS", "PRIORVALUE"})


def _ref(st: _State, n: Ref, *, raw: bool) -> TNode:
    parts = n.parts
    head = parts[0].lower()
    if head.startswith("$"):
        scope = _GLOBALS.get(head)
        if scope is None:
            raise error_at(st.text, n.pos, f"Unknown global {parts[0]}; use $User or $Organization")
        if len(parts) != 2:
            raise error_at(st.text, n.pos, f"Write {parts[0]}.FieldName")
        target = st.schema.find_object(scope)
        f = target.find_field(parts[1]) if target else None
        if f is None or f.type == "formula":
            raise error_at(st.text, n.pos, f"Unknown field {parts[1]} on {parts[0]}")
        st.globals_ = True
        t = field_type(f)
        return TGlobal(t, t not in _NEVER_NULL_TYPES, n.pos, scope, f)
    obj = st.obj
    path: list[FieldDef] = []
    for part in parts[:-1]:
        lookup = obj.find_relationship(part)
        if lookup is None:
            raise error_at(st.text, n.pos, f"Unknown relationship {part} on {obj.api_name}")
        if len(lookup.reference_to) != 1:
            raise error_at(st.text, n.pos, f"{part} can point at several objects; formulas cannot follow it")
        if len(path) >= MAX_DEPTH:
            raise error_at(st.text, n.pos, f"A formula can follow at most {MAX_DEPTH} relationships")
        path.append(lookup)
        obj = st.schema.get_object(lookup.reference_to[0])
    f = obj.find_field(parts[-1])
    if f is None:
        hint = " (use the relationship name, such as Account.Name)" if len(parts) > 1 else ""
        raise error_at(st.text, n.pos, f"Unknown field {parts[-1]} on {obj.api_name}{hint}")
    t = field_type(f)
    formula: TNode | None = None
    if f.type == "formula":
        node_key = (obj.key, f.key)
        chain = (*st.stack, node_key)
        if node_key in st.stack:
            names = " -> ".join(k[1] for k in chain)
            raise error_at(st.text, n.pos, f"The formula refers to itself: {names}")
        try:
            inner = bind(f.formula or "", obj, st.schema, blank_as=f.blank_as, returns=f.returns, _stack=chain)
        except FormulaError as exc:
            if "refers to itself" in exc.reason:
                raise error_at(st.text, n.pos, exc.reason) from None
            raise error_at(st.text, n.pos, f"Field {obj.api_name}.{f.api_name} has an invalid formula: "
                                           f"{exc.reason}") from None
        st.depends.add(node_key)
        st.depends.update(inner.depends_on)
        formula = inner.root
    zero = st.zero and not raw and t in NUMERIC
    if t in _NEVER_NULL_TYPES or zero:
        nullable = False
    elif formula is not None:
        nullable = formula.nullable or bool(path)
    else:
        nullable = not (f.type == "id" and not path)
    return TField(t, nullable, n.pos, tuple(path), f, zero, formula)


def check_formula_fields(obj: ObjectDef, schema: SchemaSnapshot) -> None:
    """Type-check every formula field of ``obj`` against its return type and refuse cycles (for plan time).

    Raises ``MetadataError`` naming the object and field, with the formula error's position in the message.
    """
    for f in obj.fields:
        if f.type != "formula":
            continue
        try:
            bind(f.formula or "", obj, schema, blank_as=f.blank_as, returns=f.returns,
                 _stack=((obj.key, f.key),))
        except FormulaError as exc:
            raise MetadataError(f"object {obj.api_name!r}, field {f.api_name!r}: {exc.message}",
                                fields=[f.api_name]) from None


def check_object(obj: ObjectDef, schema: SchemaSnapshot) -> None:
    """Everything formula-shaped on an object: formula fields, default formulas, validation rules, roll-ups."""
    check_formula_fields(obj, schema)
    for f in obj.fields:
        default = f.default
        if isinstance(default, dict) and "formula" in default:
            try:
                bind(str(default["formula"]), obj, schema, context_kind="default", blank_as="blank",
                     returns=_returns_for(f))
            except FormulaError as exc:
                raise MetadataError(f"object {obj.api_name!r}, field {f.api_name!r}: default: {exc.message}",
                                    fields=[f.api_name]) from None
        if f.type == "rollup":
            from keel.formula.rollup import resolve_rollup

            resolve_rollup(obj, f, schema)
    for rule in obj.validation_rules:
        try:
            bind(rule.condition, obj, schema, context_kind="validation", blank_as="blank", returns="checkbox")
        except FormulaError as exc:
            raise MetadataError(f"object {obj.api_name!r}, validation rule {rule.name!r}: {exc.message}") from None


def _returns_for(f: FieldDef) -> str | None:
    t = field_type(f)
    if t in (PICKLIST, MULTIPICKLIST, "id"):
        return TEXT if t != "id" else None
    return "checkbox" if t == BOOLEAN else t


__all__ = ["TGlobal", "bind", "check", "check_formula_fields", "check_object", "describe_check"]
