"""The shape of one row of the function table, and the helpers rows are written with.

A row carries everything about one function or operator: how it is typed, how Python evaluates it and how SQL
computes it on each dialect. Keeping all three side by side is what lets the differential test hold them equal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import BooleanClauseList, ColumnElement, Grouping

from keel.formula.context import FormulaContext
from keel.formula.typed import (
    BOOLEAN,
    CURRENCY,
    DATE,
    DATETIME,
    NULL,
    NUMBER,
    NUMERIC,
    PERCENT,
    TEXT,
    TLit,
    TNode,
)

Col = ColumnElement[Any]
Closure = Callable[[Mapping[str, Any], FormulaContext], Any]
PyFactory = Callable[[tuple[str, ...], str], Callable[..., Any]]
LazyFactory = Callable[[list[Closure], tuple[TNode, ...], str], Closure]
ALL_CONTEXTS = frozenset({"field", "validation", "default", "flow"})
CHANGE_CONTEXTS = frozenset({"validation", "flow"})
ZERO = Decimal(0)


class ArgError(Exception):
    """Raised by a typer; the checker turns it into a positioned ``FormulaError``."""

    def __init__(self, index: int | None, message: str, expected: str | None = None,
                 actual: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.message = message
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class SqlEnv:
    """What SQL implementations need beyond their arguments."""

    dialect: str
    context: FormulaContext | None

    @property
    def pg(self) -> bool:
        return self.dialect == "postgresql"


SqlImpl = Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]
Typer = Callable[[tuple[TNode, ...]], str]


@dataclass(frozen=True, slots=True)
class Fn:
    """One function or operator. Exactly one of ``py`` (eager) and ``lazy`` is set.

    ``nulls="propagate"``: an eager implementation is not called when an argument is None; the result is None.
    ``raw`` functions read their field arguments without blank-as-zero (ISBLANK must see the blank).
    ``sql`` None means the function cannot run in a query (change tracking).
    """

    name: str
    signature: str
    summary: str
    min_args: int
    max_args: int | None
    typer: Typer
    py: PyFactory | None = None
    lazy: LazyFactory | None = None
    sql: SqlImpl | None = None
    nulls: str = "propagate"
    contexts: frozenset[str] = ALL_CONTEXTS
    raw: bool = False
    operator: bool = False
    category: str = ""


# --- typing helpers -------------------------------------------------------------------------------------------

def describe(types: frozenset[str] | set[str]) -> str:
    if types == NUMERIC:
        return "number"
    return " or ".join(sorted(types))


def numeric_result(*types: str) -> str:
    real = [t for t in types if t != NULL]
    if CURRENCY in real:
        return CURRENCY
    if real and all(t == PERCENT for t in real):
        return PERCENT
    return NUMBER


def unify(a: str, b: str) -> str | None:
    """The common type of two branches (IF, CASE, BLANKVALUE), or None when there is none."""
    if a == NULL:
        return b
    if b == NULL or a == b:
        return a
    if a in NUMERIC and b in NUMERIC:
        return numeric_result(a, b)
    return None


def expect(node: TNode, index: int, allowed: frozenset[str] | set[str]) -> None:
    if node.type != NULL and node.type not in allowed:
        raise ArgError(index, f"argument {index + 1} must be {describe(allowed)}, not {node.type}",
                       describe(allowed), node.type)


def sig(params: Sequence[frozenset[str]], ret: str | Callable[[tuple[TNode, ...]], str],
        rest: frozenset[str] | None = None) -> Typer:
    """A typer for fixed parameter types (``rest`` types any further arguments)."""

    def typer(args: tuple[TNode, ...]) -> str:
        for i, a in enumerate(args):
            allowed = params[i] if i < len(params) else rest
            if allowed is not None:
                expect(a, i, allowed)
        return ret(args) if callable(ret) else ret

    return typer


def num_ret(args: tuple[TNode, ...]) -> str:
    return numeric_result(*(a.type for a in args))


def first_ret(args: tuple[TNode, ...]) -> str:
    return numeric_result(args[0].type)


S_TEXT = frozenset({TEXT})
S_NUM = NUMERIC
S_BOOL = frozenset({BOOLEAN})
S_DATE = frozenset({DATE})
S_DATETIME = frozenset({DATETIME})


# --- Python helpers -------------------------------------------------------------------------------------------

def to_dec(v: Any) -> Decimal | None:
    """Numbers arrive as int, float (SQLite rows) or Decimal; formulas compute in Decimal."""
    if v is None or type(v) is Decimal:
        return v
    if isinstance(v, bool):
        return Decimal(int(v))
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    return Decimal(str(v))


def to_int(v: Decimal) -> int:
    return int(v)


def const(value: Any) -> Closure:
    return lambda r, c: value


# --- SQL helpers ----------------------------------------------------------------------------------------------

def num_type(env: SqlEnv) -> sa.types.TypeEngine[Any]:
    return sa.Numeric() if env.pg else sa.Float()


def num_lit(v: Decimal | int, env: SqlEnv) -> Col:
    if env.pg:
        return sa.literal(Decimal(v), sa.Numeric())
    return sa.literal(float(v), sa.Float())


def int_lit(v: int) -> Col:
    return sa.literal(v, sa.Integer())


def text_lit(v: str) -> Col:
    return sa.literal(v, sa.Text())


def as_int(x: Col, env: SqlEnv) -> Col:
    """Truncate a number to an integer argument, as Python's ``int()`` does."""
    if env.pg:
        return sa.cast(sa.func.trunc(x), sa.Integer())
    return sa.cast(x, sa.Integer())


def as_num(x: Col, env: SqlEnv) -> Col:
    """Integers from LENGTH, EXTRACT or date differences become the dialect's number type."""
    return sa.cast(x, sa.Numeric()) if env.pg else sa.type_coerce(x, sa.Float())


def text(x: Col) -> Col:
    return sa.type_coerce(x, sa.Text())


def boolean(x: Col) -> Col:
    """``x`` typed as a boolean. An AND/OR is parenthesised first: SQLAlchemy does not group a ``type_coerce``
    of one when it is negated, so ``NOT(INCLUDES(…))`` rendered as ``NOT a != '' AND b > 0`` on PostgreSQL
    (``NOT`` binds tighter than ``AND``) and as ``a != '' AND b > 0 = 0`` on SQLite."""
    if isinstance(x, BooleanClauseList):
        x = Grouping(x)
    return sa.type_coerce(x, sa.Boolean())


def nz_text(x: Col, node: TNode) -> Col:
    """Text that may be NULL read as '' (Salesforce does not tell empty text from blank)."""
    return sa.func.coalesce(x, text_lit("")) if node.nullable else x


def never_null(x: Col, *nodes: TNode) -> Col:
    """Booleans are never blank in formulas; SQL's unknown becomes FALSE."""
    if any(n.nullable for n in nodes):
        return boolean(sa.func.coalesce(x, sa.false()))
    return boolean(x)


def literal_int(node: TNode) -> int | None:
    if isinstance(node, TLit) and isinstance(node.value, Decimal):
        return int(node.value)
    return None


def greatest(a: Col, b: Col, env: SqlEnv) -> Col:
    return sa.func.greatest(a, b) if env.pg else sa.func.max(a, b)


def sqlite_dt(x: Col) -> Col:
    """SQLite datetimes in one text form, the one SQLAlchemy stores (``YYYY-MM-DD HH:MM:SS.ffffff``), so text
    comparison is time order and results parse back."""
    return text(sa.func.strftime("%Y-%m-%d %H:%M:%f", x).op("||")(text_lit("000")))


def datetime_lit(v: dt.datetime, env: SqlEnv) -> Col:
    if env.pg:
        return sa.literal(v, sa.DateTime())
    return text_lit(v.strftime("%Y-%m-%d %H:%M:%S.") + f"{v.microsecond // 1000:03d}000")


def date_lit(v: dt.date, env: SqlEnv) -> Col:
    if env.pg:
        return sa.literal(v, sa.Date())
    return text_lit(v.isoformat())
