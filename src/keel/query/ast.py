"""The SOQL syntax tree: frozen dataclasses, so parsed queries can be cached, compared and hashed.

Every node that an error can point at carries ``pos`` = (line, column). Positions are excluded from equality so a
query and its re-formatted text parse to equal trees (the round-trip property test relies on this).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Pos = tuple[int, int]
NOPOS: Pos = (0, 0)


# --- values ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringLit:
    raw: str  # escapes still in place; see tokens.unescape
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NumberLit:
    text: str
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NullLit:
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DateLit:
    text: str
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DateTimeLit:
    text: str
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DateFormula:
    """``TODAY``, ``LAST_N_DAYS:5`` …; ``n`` is None for the fixed literals."""

    name: str
    n: int | None = None
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CurrencyLit:
    code: str
    amount: str
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


Literal = StringLit | NumberLit | BoolLit | NullLit | DateLit | DateTimeLit | DateFormula | CurrencyLit


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[Literal, ...]
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


# --- expressions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRef:
    path: tuple[str, ...]
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: aggregates, date functions, ``toLabel``, ``convertCurrency``, ``FORMAT`` …"""

    name: str
    args: tuple[Expr, ...]
    pos: Pos = field(default=NOPOS, compare=False, repr=False)
    number: str | None = None  # a trailing numeric argument: the fraction of ``PERCENTILE(field, 0.9)``


Expr = FieldRef | Call


@dataclass(frozen=True, slots=True)
class SelectExpr:
    expr: Expr
    alias: str | None = None
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SubSelect:
    query: Query
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TypeOfWhen:
    type_name: str
    fields: tuple[FieldRef, ...]


@dataclass(frozen=True, slots=True)
class TypeOf:
    ref: FieldRef
    whens: tuple[TypeOfWhen, ...]
    else_fields: tuple[FieldRef, ...] = ()
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FieldsFn:
    kind: str  # ALL | STANDARD | CUSTOM
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


SelectItem = SelectExpr | SubSelect | TypeOf | FieldsFn


# --- conditions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    lhs: Expr
    op: str  # = != < <= > >= LIKE IN NOT IN INCLUDES EXCLUDES
    value: Literal | ListValue | Query
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    cond: Cond
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Cond, ...]
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Cond, ...]
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Paren:
    """Kept so the formatter reproduces the user's grouping (and so ``a AND (b OR c)`` is not an error)."""

    cond: Cond
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


Cond = Comparison | Not | And | Or | Paren


# --- query ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderItem:
    expr: Expr
    descending: bool = False
    nulls: str | None = None  # FIRST | LAST | None (default)
    explicit_dir: bool = False
    pos: Pos = field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Query:
    select: tuple[SelectItem, ...]
    from_: str
    alias: str | None = None
    scope: str | None = None
    where: Cond | None = None
    with_: str | None = None
    group_by: tuple[Expr, ...] = ()
    group_kind: str | None = None  # ROLLUP | CUBE | None
    having: Cond | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    for_: tuple[str, ...] = ()
    update: str | None = None
    pos: Pos = field(default=NOPOS, compare=False, repr=False)
    from_pos: Pos = field(default=NOPOS, compare=False, repr=False)
