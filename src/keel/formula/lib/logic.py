"""Logic and comparison: IF CASE AND OR NOT ISBLANK ISNULL BLANKVALUE NULLVALUE, ``= != < <= > >= && || !``.

Booleans are never blank: a comparison with a blank operand is FALSE (``=`` and ``!=`` are null-safe, so
``x = NULL`` asks whether x is blank). Text compares case-sensitively by code point on every back end.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from keel.formula.fn import (
    ArgError,
    Closure,
    Col,
    Fn,
    SqlEnv,
    boolean,
    describe,
    never_null,
    nz_text,
    sig,
    unify,
)
from keel.formula.typed import (
    BOOLEAN,
    DATE,
    DATETIME,
    ID,
    MULTIPICKLIST,
    NULL,
    NUMERIC,
    PICKLIST,
    TEXT,
    TIME,
    TCall,
    TField,
    TNode,
)

_TEXTLIKE = frozenset({TEXT, PICKLIST})
_ORDERED = frozenset({TEXT, DATE, DATETIME, TIME}) | NUMERIC


def _family(t: str) -> str:
    return "number" if t in NUMERIC else t


def _compare_typer(ordered: bool) -> Callable[[tuple[TNode, ...]], str]:
    def typer(args: tuple[TNode, ...]) -> str:
        a, b = args
        for i, n in enumerate(args):
            if n.type in (PICKLIST, MULTIPICKLIST):
                raise ArgError(i, "picklist fields can only be compared with ISPICKVAL, CASE or TEXT",
                               "text", n.type)
        if NULL in (a.type, b.type):
            return BOOLEAN
        if _family(a.type) != _family(b.type):
            raise ArgError(1, f"cannot compare {a.type} with {b.type}", a.type, b.type)
        if ordered and a.type not in _ORDERED:
            raise ArgError(0, f"{a.type} values cannot be ordered", describe(set(_ORDERED)), a.type)
        return BOOLEAN

    return typer


def _eq_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    if TEXT in types or ID in types:
        return lambda a, b: (a or "") == (b or "")
    return lambda a, b: a == b


def _ne_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    eq = _eq_py(types, ret)
    return lambda a, b: not eq(a, b)


def _order_py(op: Callable[[Any, Any], bool]) -> Callable[[tuple[str, ...], str], Callable[..., Any]]:
    def factory(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
        return lambda a, b: False if a is None or b is None else op(a, b)

    return factory


def _computed(n: TNode) -> bool:
    return isinstance(n, TCall)


def _num_operands(a: Col, b: Col, nodes: tuple[TNode, ...], env: SqlEnv) -> tuple[Col, Col]:
    """SQLite computes in binary floating point: compare computed numbers at 9 decimals so 0.1+0.2 = 0.3 holds,
    as it does in the Decimal arithmetic of Salesforce and of ``evaluate``."""
    if env.pg or not any(_computed(n) for n in nodes) or nodes[0].type not in NUMERIC:
        return a, b
    return sa.func.round(a, 9), sa.func.round(b, 9)


def eq_sql(args: list[Col], nodes: tuple[TNode, ...], env: SqlEnv) -> Col:
    a, b = args
    na, nb = nodes
    if na.type == NULL and nb.type == NULL:
        return sa.true()
    if TEXT in (na.type, nb.type) or PICKLIST in (na.type, nb.type):
        return boolean(nz_text(a, na) == nz_text(b, nb))
    if na.type == NULL:
        return boolean(b.is_(None))
    if nb.type == NULL:
        return boolean(a.is_(None))
    a, b = _num_operands(a, b, nodes, env)
    if na.nullable or nb.nullable:
        return boolean(a.is_not_distinct_from(b))
    return boolean(a == b)


def _eq_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return eq_sql(args, nodes, env)


def _ne_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return boolean(sa.not_(eq_sql(args, nodes, env)))


def _order_sql(op: Callable[[Any, Any], Any]) -> Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]:
    def impl(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
        if NULL in (nodes[0].type, nodes[1].type):
            return sa.false()
        a, b = _num_operands(args[0], args[1], nodes, env)
        if env.pg and nodes[0].type == TEXT:
            a, b = sa.collate(a, "C"), sa.collate(b, "C")
        return never_null(op(a, b), *nodes)

    return impl


def eq_py_for(types: tuple[str, ...]) -> Callable[[Any, Any], bool]:
    return _eq_py(types, BOOLEAN)


# --- IF / CASE ------------------------------------------------------------------------------------------------

def _if_typer(args: tuple[TNode, ...]) -> str:
    if args[0].type not in (BOOLEAN, NULL):
        raise ArgError(0, f"the condition must be boolean, not {args[0].type}", "boolean", args[0].type)
    t = unify(args[1].type, args[2].type)
    if t is None:
        raise ArgError(2, f"IF branches must have the same type: {args[1].type} and {args[2].type}",
                       args[1].type, args[2].type)
    return t


def _if_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    cond, yes, no = cl
    return lambda r, c: yes(r, c) if cond(r, c) else no(r, c)


def _if_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return sa.case((args[0], args[1]), else_=args[2])


def _case_typer(args: tuple[TNode, ...]) -> str:
    if len(args) < 4 or len(args) % 2:
        raise ArgError(None, "CASE takes an expression, value/result pairs and an else result")
    subject = args[0].type
    want = TEXT if subject == PICKLIST else subject
    if subject == MULTIPICKLIST:
        raise ArgError(0, "CASE cannot test a multi-select picklist; use INCLUDES", "text", subject)
    result = args[-1].type
    for i in range(1, len(args) - 1, 2):
        if unify(want, args[i].type) is None:
            raise ArgError(i, f"CASE value must be {want}, not {args[i].type}", want, args[i].type)
        t = unify(result, args[i + 1].type)
        if t is None:
            raise ArgError(i + 1, f"CASE results must have the same type: {result} and {args[i + 1].type}",
                           result, args[i + 1].type)
        result = t
    return result


def _case_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    subject, default = cl[0], cl[-1]
    pairs = [(cl[i], cl[i + 1]) for i in range(1, len(cl) - 1, 2)]
    eq = eq_py_for((TEXT if nodes[0].type in _TEXTLIKE else nodes[0].type,))

    def run(r: Any, c: Any) -> Any:
        v = subject(r, c)
        for when, then in pairs:
            if eq(v, when(r, c)):
                return then(r, c)
        return default(r, c)

    return run


def _case_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    whens = [(eq_sql([args[0], args[i]], (nodes[0], nodes[i]), env), args[i + 1]) for i in range(1, len(args) - 1, 2)]
    return sa.case(*whens, else_=args[-1])


# --- boolean logic --------------------------------------------------------------------------------------------

def _and_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    if len(cl) == 2:
        a, b = cl
        return lambda r, c: bool(a(r, c)) and bool(b(r, c))
    return lambda r, c: all(f(r, c) for f in cl)


def _or_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    if len(cl) == 2:
        a, b = cl
        return lambda r, c: bool(a(r, c)) or bool(b(r, c))
    return lambda r, c: any(f(r, c) for f in cl)


def _not_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda a: not a


def _blank_py(v: Any) -> bool:
    return v is None or v == ""


def _isblank_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    (a,) = cl
    return lambda r, c: _blank_py(a(r, c))


def _isblank_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    (a,), (n,) = args, nodes
    if n.type == NULL:
        return sa.true()
    if n.type in (TEXT, PICKLIST, MULTIPICKLIST):
        return boolean(sa.func.coalesce(a, "") == "")
    if not n.nullable:
        return sa.false()
    return boolean(a.is_(None))


def _isnull_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    if nodes[0].type in (TEXT, PICKLIST, MULTIPICKLIST):
        return lambda r, c: False  # Salesforce: text is never null; use ISBLANK
    return _isblank_lazy(cl, nodes, ret)


def _isnull_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    if nodes[0].type in (TEXT, PICKLIST, MULTIPICKLIST):
        return sa.false()
    return _isblank_sql(args, nodes, ret, env)


def _blankvalue_typer(args: tuple[TNode, ...]) -> str:
    t = unify(args[0].type, args[1].type)
    if t is None or t in (PICKLIST, MULTIPICKLIST):
        raise ArgError(1, f"the substitute must be {args[0].type}, not {args[1].type}", args[0].type, args[1].type)
    return t


def _blankvalue_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    a, alt = cl

    def run(r: Any, c: Any) -> Any:
        v = a(r, c)
        return alt(r, c) if v is None or v == "" else v

    return run


def _blankvalue_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    a, alt = args
    if nodes[0].type == TEXT:
        return sa.case((sa.func.coalesce(a, "") == "", alt), else_=a)
    return sa.func.coalesce(a, alt)


def _bool_sql(kind: str) -> Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]:
    def impl(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
        # a NULL condition counts as FALSE, as in Python: SQL's unknown would make AND(NULL, TRUE) unknown
        args = [sa.func.coalesce(a, sa.false()) if n.nullable else a for a, n in zip(args, nodes, strict=True)]
        if kind == "and":
            return boolean(sa.and_(*args))
        if kind == "or":
            return boolean(sa.or_(*args))
        return boolean(sa.not_(args[0]))

    return impl


_B = frozenset({BOOLEAN})
_ANY_TYPER = sig((), BOOLEAN)


def _only_field(args: tuple[TNode, ...]) -> str:
    return BOOLEAN


ROWS = [
    Fn("IF", "IF(condition, value_if_true, value_if_false)", "The second argument when the condition is true, "
       "else the third.", 3, 3, _if_typer, lazy=_if_lazy, sql=_if_sql, category="Logic"),
    Fn("CASE", "CASE(expression, value1, result1, …, else_result)", "The result paired with the first value "
       "equal to the expression, else the last argument. Works on picklists.", 4, None, _case_typer,
       lazy=_case_lazy, sql=_case_sql, category="Logic"),
    Fn("AND", "AND(condition, …)", "TRUE when every condition is true.", 1, None, sig((), BOOLEAN, _B),
       lazy=_and_lazy, sql=_bool_sql("and"), category="Logic"),
    Fn("OR", "OR(condition, …)", "TRUE when any condition is true.", 1, None, sig((), BOOLEAN, _B),
       lazy=_or_lazy, sql=_bool_sql("or"), category="Logic"),
    Fn("NOT", "NOT(condition)", "TRUE when the condition is false.", 1, 1, sig((_B,), BOOLEAN), py=_not_py,
       sql=_bool_sql("not"), category="Logic"),
    Fn("ISBLANK", "ISBLANK(value)", "TRUE when the value is blank (empty text counts as blank). Number fields "
       "are read as they are, even under blank_as: zero.", 1, 1, _ANY_TYPER, lazy=_isblank_lazy,
       sql=_isblank_sql, raw=True, category="Logic"),
    Fn("ISNULL", "ISNULL(value)", "Like ISBLANK, except that text is never null (always FALSE), as in "
       "Salesforce; prefer ISBLANK.", 1, 1, _ANY_TYPER, lazy=_isnull_lazy, sql=_isnull_sql, raw=True,
       category="Logic"),
    Fn("BLANKVALUE", "BLANKVALUE(value, substitute)", "The value, or the substitute when the value is blank.",
       2, 2, _blankvalue_typer, lazy=_blankvalue_lazy, sql=_blankvalue_sql, raw=True, category="Logic"),
    Fn("NULLVALUE", "NULLVALUE(value, substitute)", "The value, or the substitute when the value is null "
       "(same as BLANKVALUE here).", 2, 2, _blankvalue_typer, lazy=_blankvalue_lazy, sql=_blankvalue_sql,
       raw=True, category="Logic"),
    Fn("&&", "a && b", "Logical AND.", 2, 2, sig((_B, _B), BOOLEAN), lazy=_and_lazy, sql=_bool_sql("and"),
       operator=True, category="Operators"),
    Fn("||", "a || b", "Logical OR.", 2, 2, sig((_B, _B), BOOLEAN), lazy=_or_lazy, sql=_bool_sql("or"),
       operator=True, category="Operators"),
    Fn("!", "!a", "Logical NOT.", 1, 1, sig((_B,), BOOLEAN), py=_not_py, sql=_bool_sql("not"), operator=True,
       category="Operators"),
    Fn("=", "a = b, a == b", "Equal (null-safe: two blanks are equal; x = NULL tests for blank).", 2, 2,
       _compare_typer(False), py=_eq_py, sql=_eq_sql, nulls="pass", operator=True, category="Operators"),
    Fn("!=", "a != b, a <> b", "Not equal (null-safe).", 2, 2, _compare_typer(False), py=_ne_py, sql=_ne_sql,
       nulls="pass", operator=True, category="Operators"),
    Fn("<", "a < b", "Less than; FALSE when either side is blank.", 2, 2, _compare_typer(True),
       py=_order_py(operator.lt), sql=_order_sql(operator.lt), nulls="pass", operator=True, category="Operators"),
    Fn("<=", "a <= b", "Less than or equal; FALSE when either side is blank.", 2, 2, _compare_typer(True),
       py=_order_py(operator.le), sql=_order_sql(operator.le), nulls="pass", operator=True,
       category="Operators"),
    Fn(">", "a > b", "Greater than; FALSE when either side is blank.", 2, 2, _compare_typer(True),
       py=_order_py(operator.gt), sql=_order_sql(operator.gt), nulls="pass", operator=True, category="Operators"),
    Fn(">=", "a >= b", "Greater than or equal; FALSE when either side is blank.", 2, 2, _compare_typer(True),
       py=_order_py(operator.ge), sql=_order_sql(operator.ge), nulls="pass", operator=True,
       category="Operators"),
]

__all__ = ["ROWS", "TField", "eq_py_for", "eq_sql"]
