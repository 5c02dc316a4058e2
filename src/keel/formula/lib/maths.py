"""Arithmetic and maths: ``+ - * / ^``, date arithmetic, ROUND CEILING FLOOR ABS MAX MIN MOD SQRT EXP LN LOG.

Python computes in Decimal, as Salesforce does; results that Salesforce reports as ``#Error!`` (division by zero,
the square root of a negative number) are blank on both back ends. SQL guards the argument rather than the result,
so PostgreSQL never raises even when it folds constants.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal
from typing import Any

import sqlalchemy as sa

from keel.formula.fn import (
    S_NUM,
    ArgError,
    Col,
    Fn,
    SqlEnv,
    as_int,
    as_num,
    first_ret,
    literal_int,
    num_lit,
    num_ret,
    numeric_result,
    nz_text,
    sig,
    sqlite_dt,
    text,
)
from keel.formula.lib.times import add_ms, add_ms_sql, diff_ms_sql, time_ms
from keel.formula.typed import DATE, DATETIME, NULL, NUMBER, NUMERIC, TEXT, TIME, TCall, TNode

_CTX = decimal.Context(prec=28, rounding=ROUND_HALF_UP, traps=[decimal.InvalidOperation, decimal.DivisionByZero,
                                                               decimal.Overflow])
_DAY_MS = Decimal(86_400_000)
_MOVABLE = (DATE, DATETIME, TIME)  # what + and - shift by a number: days, or milliseconds for a time


def _safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Salesforce's ``#Error!`` results (overflow, invalid operation) become blank."""

    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except (decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, ValueError, OverflowError):
            return None

    return run


# --- + and - ---------------------------------------------------------------------------------------------------

def _plus_typer(args: tuple[TNode, ...]) -> str:
    a, b = args[0].type, args[1].type
    if (a == TEXT and b in (TEXT, NULL)) or (b == TEXT and a == NULL):
        return TEXT
    if a in _MOVABLE and b in NUMERIC | {NULL}:
        return a
    if b in _MOVABLE and a in NUMERIC | {NULL}:
        return b
    for i, t in enumerate((a, b)):
        if t not in NUMERIC | {NULL}:
            raise ArgError(i, f"cannot add {a} and {b}", "number", t)
    return numeric_result(a, b)


def _minus_typer(args: tuple[TNode, ...]) -> str:
    a, b = args[0].type, args[1].type
    if a in _MOVABLE and b == a:
        return NUMBER
    if a in _MOVABLE and b in NUMERIC | {NULL}:
        return a
    for i, t in enumerate((a, b)):
        if t not in NUMERIC | {NULL}:
            raise ArgError(i, f"cannot subtract {b} from {a}", "number", t)
    return numeric_result(a, b)


def _add_days_py(d: Any, n: Decimal) -> Any:
    if isinstance(d, dt.time):
        return add_ms(d, n)
    if isinstance(d, dt.datetime):
        ms = (n * _DAY_MS).quantize(Decimal(1), ROUND_HALF_UP)
        return d + dt.timedelta(milliseconds=int(ms))
    return d + dt.timedelta(days=int(n))


def _plus_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    if ret == TEXT:
        return lambda a, b: a + b
    if ret in _MOVABLE:
        if types[0] in _MOVABLE:
            return _safe(_add_days_py)
        return _safe(lambda n, d: _add_days_py(d, n))
    return lambda a, b: a + b


def _minus_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    if types[0] in _MOVABLE and types[1] == types[0]:
        if types[0] == DATE:
            return lambda a, b: Decimal((a - b).days)
        if types[0] == TIME:
            return lambda a, b: time_ms(a) - time_ms(b)
        return lambda a, b: Decimal((a - b) // dt.timedelta(microseconds=1)) / Decimal(86_400_000_000)
    if ret in _MOVABLE:
        return _safe(lambda d, n: _add_days_py(d, -n))
    return lambda a, b: a - b


def _add_days_sql(d: Col, n: Col, t: str, env: SqlEnv) -> Col:
    if t == TIME:
        return add_ms_sql(d, n, env)
    if t == DATE:
        if env.pg:
            return d + as_int(n, env)
        return text(sa.func.date(sa.func.julianday(d) + as_int(n, env)))
    if env.pg:
        ms = sa.cast(sa.func.round(n * 86_400_000), sa.BigInteger())
        return d + ms * sa.text("interval '1 millisecond'")
    return sqlite_dt(sa.func.julianday(d) + n)


def _epoch_ms(x: Col) -> Col:
    """Whole milliseconds since 1970 on SQLite: exact, unlike julianday() differences (float days)."""
    seconds = sa.cast(sa.func.strftime("%s", x), sa.Integer())
    millis = sa.cast(sa.func.substr(sa.func.strftime("%f", x), 4), sa.Integer())
    return seconds * 1000 + millis


def _plus_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    a, b = args
    if ret == TEXT:
        return text(nz_text(a, nodes[0]).op("||")(nz_text(b, nodes[1])))
    if ret in _MOVABLE:
        if nodes[0].type == ret:
            return _add_days_sql(a, b, ret, env)
        return _add_days_sql(b, a, ret, env)
    return a + b


def _minus_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    a, b = args
    t = nodes[0].type
    if t == TIME and nodes[1].type == t:
        return diff_ms_sql(a, b, env)
    if t in (DATE, DATETIME) and nodes[1].type == t:
        if env.pg:
            if t == DATE:
                return as_num(a - b, env)
            return sa.extract("epoch", a - b) / num_lit(86400, env)
        if t == DATE:
            diff = sa.func.julianday(a) - sa.func.julianday(b)
            return as_num(sa.cast(sa.func.round(diff), sa.Integer()), env)
        return sa.cast(_epoch_ms(a) - _epoch_ms(b), sa.Float()) / 86_400_000.0
    if ret in _MOVABLE:
        return _add_days_sql(a, -b, ret, env)
    return a - b


# --- * / ^ and unary minus ------------------------------------------------------------------------------------

def _times_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return args[0] * args[1]


def _divide_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return _safe(lambda a, b: None if b == 0 else _CTX.divide(a, b))


def _divide_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    a, b = args
    den = sa.func.nullif(b, 0)
    if env.pg:
        return sa.cast(a, sa.Numeric()) / den
    return sa.cast(a, sa.Float()) / den


def _power(a: Decimal, b: Decimal) -> Decimal | None:
    if b == 0:
        return Decimal(1)
    if a == 0 and b < 0:
        return None
    if a < 0 and b != b.to_integral_value():
        return None
    if abs(b) > 1000:
        return None
    return _CTX.power(a, b)


def _power_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    a, b = args
    ok = sa.or_(a > 0, sa.and_(a == 0, b >= 0), sa.and_(a < 0, b == sa.func.trunc(b)))
    guarded = sa.case((sa.and_(ok, sa.func.abs(b) <= 1000), a))
    return sa.case((b == 0, num_lit(1, env)), else_=sa.func.power(guarded, b))


def _neg_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda a: -a


def _neg_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return -args[0]


# --- functions ------------------------------------------------------------------------------------------------

def _quantum(n: int) -> Decimal:
    return Decimal(1).scaleb(-n)


def round_half_up(x: Decimal, n: int) -> Decimal:
    """Salesforce rounds half away from zero: ROUND(2.5, 0) = 3, ROUND(-2.5, 0) = -3."""
    try:
        return x.quantize(_quantum(n), rounding=ROUND_HALF_UP, context=_CTX)
    except decimal.InvalidOperation:
        return x


def _round_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda x, n: round_half_up(x, int(n))


def round_sql(x: Col, digits: Col, digits_node: TNode | None, env: SqlEnv) -> Col:
    if env.pg:
        return sa.func.round(x, as_int(digits, env))
    known = literal_int(digits_node) if digits_node is not None else None
    if known is not None and known >= 0:
        return sa.func.round(x, known)
    n = as_int(digits, env)
    scale = sa.func.power(10.0, -n)
    negative = sa.func.round(x / scale) * scale
    if known is not None:
        return negative
    return sa.case((n >= 0, sa.func.round(x, n)), else_=negative)


def _round_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    # SQLite's round() already rounds at about 15 significant digits (ROUND(1.005, 2) = 1.01 although the double is
    # 1.00499…), so it needs no settling; it is also the costliest step, so one call per ROUND.
    return round_sql(args[0], args[1], nodes[1], env)


def settle(x: Col, node: TNode, env: SqlEnv, *, outward: bool) -> Col:
    """SQLite computes in binary floating point, so 0.7 * 30 is 20.999999999999996. Before FLOOR (toward zero) nudge
    computed values 1e-10 away from zero, before CEILING (away from zero) 1e-10 toward it, so integers computed
    inexactly land where exact Decimal arithmetic puts them. Cheaper than round()."""
    if env.pg or not isinstance(node, TCall):
        return x
    step = 1e-10 if outward else -1e-10
    return x + sa.case((x > 0, step), (x < 0, -step), else_=0)  # zero stays zero: CEILING(0) is 0, not -1


def _ceiling_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda x: x.to_integral_value(rounding=ROUND_UP)


def _ceiling_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    x = settle(args[0], nodes[0], env, outward=False)
    return sa.case((x >= 0, sa.func.ceil(x)), else_=-sa.func.ceil(-x))


def _floor_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda x: x.to_integral_value(rounding=ROUND_DOWN)


def _floor_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return sa.func.trunc(settle(args[0], nodes[0], env, outward=True))


def _abs_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return abs


def _abs_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return sa.func.abs(args[0])


def _extreme_py(pick: Callable[..., Any]) -> Callable[[tuple[str, ...], str], Callable[..., Any]]:
    def factory(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
        return lambda *xs: pick(xs)

    return factory


def _extreme_sql(name: str) -> Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]:
    def impl(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
        if len(args) == 1:
            return args[0]
        if env.pg:
            fn = sa.func.greatest if name == "max" else sa.func.least
            nullable = [a for a, n in zip(args, nodes, strict=True) if n.nullable]
            if nullable:
                return sa.case((sa.or_(*(a.is_(None) for a in nullable)), sa.null()), else_=fn(*args))
            return fn(*args)
        return (sa.func.max if name == "max" else sa.func.min)(*args)  # NULL when any argument is NULL

    return impl


def _mod_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return _safe(lambda a, b: None if b == 0 else _CTX.remainder(a, b))


def _mod_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    a, b = args
    if env.pg:
        return sa.func.mod(a, sa.func.nullif(b, 0))
    quotient = sa.func.trunc(sa.func.round(a / sa.func.nullif(b, 0), 9))
    return sa.func.round(a - b * quotient, 12)


def _sqrt_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return _safe(lambda x: None if x < 0 else x.sqrt(_CTX))


def _guarded(name: str, ok: Callable[[Col], Col]) -> Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]:
    def impl(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
        x = args[0]
        out: Col = getattr(sa.func, name)(sa.case((ok(x), x)))
        return out

    return impl


def _exp_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return _safe(lambda x: None if x > 300 else x.exp(_CTX))


def _ln_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return _safe(lambda x: None if x <= 0 else x.ln(_CTX))


def _log_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return _safe(lambda x: None if x <= 0 else x.log10(_CTX))


def _log_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    x = sa.case((args[0] > 0, args[0]))
    return sa.func.log(x) if env.pg else sa.func.log10(x)


def _num(name: str) -> Callable[[tuple[str, ...], str], Callable[..., Any]]:
    ops: dict[str, Callable[..., Any]] = {"*": lambda a, b: a * b}
    return lambda types, ret: ops[name]


_N2 = sig((S_NUM, S_NUM), num_ret)
_N1 = sig((S_NUM,), first_ret)
_N1_NUMBER = sig((S_NUM,), NUMBER)

ROWS = [
    Fn("+", "a + b", "Adds numbers; date + days and datetime + days (fractional days allowed); time + "
       "milliseconds (wrapping at midnight); joins text.",
       2, 2, _plus_typer, py=_plus_py, sql=_plus_sql, operator=True, category="Operators"),
    Fn("-", "a - b", "Subtracts numbers; date - days; date - date gives days; datetime - datetime gives "
       "fractional days; time - milliseconds; time - time gives milliseconds.", 2, 2, _minus_typer, py=_minus_py,
       sql=_minus_sql, operator=True, category="Operators"),
    Fn("*", "a * b", "Multiplies.", 2, 2, _N2, py=_num("*"), sql=_times_sql, operator=True, category="Operators"),
    Fn("/", "a / b", "Divides; division by zero gives blank.", 2, 2, _N2,
       py=_divide_py, sql=_divide_sql, operator=True, category="Operators"),
    Fn("^", "a ^ b", "Raises to a power; 0 ^ negative and negative ^ fraction give blank.", 2, 2,
       sig((S_NUM, S_NUM), NUMBER), py=lambda t, r: _safe(_power), sql=_power_sql, operator=True,
       category="Operators"),
    Fn("NEG", "-a", "Negates a number.", 1, 1, _N1, py=_neg_py, sql=_neg_sql, operator=True,
       category="Operators"),
    Fn("ROUND", "ROUND(number, digits)", "Rounds half away from zero (ROUND(2.5, 0) = 3, ROUND(-2.5, 0) = -3); "
       "negative digits round to tens, hundreds, ….", 2, 2, sig((S_NUM, S_NUM), first_ret), py=_round_py,
       sql=_round_sql, category="Math"),
    Fn("CEILING", "CEILING(number)", "Rounds away from zero to an integer (CEILING(-2.5) = -3).", 1, 1, _N1,
       py=_ceiling_py, sql=_ceiling_sql, category="Math"),
    Fn("FLOOR", "FLOOR(number)", "Rounds toward zero to an integer (FLOOR(-2.5) = -2).", 1, 1, _N1,
       py=_floor_py, sql=_floor_sql, category="Math"),
    Fn("ABS", "ABS(number)", "The absolute value.", 1, 1, _N1, py=_abs_py, sql=_abs_sql, category="Math"),
    Fn("MAX", "MAX(number, …)", "The largest argument; blank if any is blank.", 1, None, sig((), num_ret, S_NUM),
       py=_extreme_py(max), sql=_extreme_sql("max"), category="Math"),
    Fn("MIN", "MIN(number, …)", "The smallest argument; blank if any is blank.", 1, None,
       sig((), num_ret, S_NUM), py=_extreme_py(min), sql=_extreme_sql("min"), category="Math"),
    Fn("MOD", "MOD(number, divisor)", "The remainder, with the sign of the number (MOD(-5, 3) = -2); blank for "
       "divisor 0.", 2, 2, _N2, py=_mod_py, sql=_mod_sql, category="Math"),
    Fn("SQRT", "SQRT(number)", "The square root; blank for negative numbers.", 1, 1, _N1_NUMBER, py=_sqrt_py,
       sql=_guarded("sqrt", lambda x: x >= 0), category="Math"),
    Fn("EXP", "EXP(number)", "e raised to the number (blank above 300).", 1, 1, _N1_NUMBER, py=_exp_py,
       sql=_guarded("exp", lambda x: x <= 300), category="Math"),
    Fn("LN", "LN(number)", "The natural logarithm; blank for numbers ≤ 0.", 1, 1, _N1_NUMBER, py=_ln_py,
       sql=_guarded("ln", lambda x: x > 0), category="Math"),
    Fn("LOG", "LOG(number)", "The base-10 logarithm; blank for numbers ≤ 0.", 1, 1, _N1_NUMBER, py=_log_py,
       sql=_log_sql, category="Math"),
]
