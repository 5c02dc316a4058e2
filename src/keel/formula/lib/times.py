"""Times of day: TIMEVALUE HOUR MINUTE SECOND MILLISECOND, and the arithmetic ``+`` and ``-`` do on times.

Salesforce's Time is a time of day to the millisecond with no date and no time zone. Adding a number adds
milliseconds and wraps around midnight (23:00 + 2 hours is 01:00), because there is no day to carry into; ``time -
time`` is the signed difference in milliseconds. PostgreSQL's ``time + interval`` already wraps. SQLite stores times
as text ``HH:MM:SS.ffffff`` (SQLAlchemy's form), so its SQL works on milliseconds since midnight and writes that
text back, which keeps text comparison in time order and lets results parse back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from keel.formula.fn import ArgError, Col, Fn, SqlEnv, as_num, sig, sqlite_dt, text, text_lit
from keel.formula.typed import DATETIME, NULL, NUMBER, TEXT, TIME, TNode

DAY_MS = 86_400_000
_TIME_TEXT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d{1,3}))?$")
_PG_TIME_RE = r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,3})?$"
S_TIME = frozenset({TIME})


# --- milliseconds since midnight ------------------------------------------------------------------------------

def time_ms(t: dt.time) -> Decimal:
    return Decimal(((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond) / 1000


def add_ms(t: dt.time, n: Decimal) -> dt.time:
    """time + n milliseconds (n rounded half away from zero), wrapping around midnight."""
    micro = ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond
    micro = (micro + int(n.quantize(Decimal(1), ROUND_HALF_UP)) * 1000) % (DAY_MS * 1000)
    seconds, rest = divmod(micro, 1_000_000)
    return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60, rest)


def _sqlite_ms(x: Col) -> Col:
    """Whole milliseconds since midnight of a SQLite time text (``HH:MM:SS.ffffff``)."""
    def part(start: int, length: int) -> Col:
        return sa.cast(sa.func.substr(x, start, length), sa.Integer())

    return part(1, 2) * 3_600_000 + part(4, 2) * 60_000 + part(7, 2) * 1000 + part(10, 3)


def _sqlite_time(ms: Col, micro: Col) -> Col:
    """SQLite time text from whole milliseconds, wrapped into one day, and the microsecond digits to keep."""
    day = sa.literal(DAY_MS, sa.Integer())
    m = (ms % day + day) % day
    out = sa.func.printf("%02d:%02d:%02d.%03d%s", m / 3_600_000, m / 60_000 % 60, m / 1000 % 60, m % 1000, micro)
    return text(sa.case((ms.is_not(None), out)))  # printf reads NULL as 0


def add_ms_sql(t: Col, n: Col, env: SqlEnv) -> Col:
    if env.pg:
        return t + sa.cast(sa.func.round(n), sa.BigInteger()) * sa.text("interval '1 millisecond'")
    return _sqlite_time(_sqlite_ms(t) + sa.cast(sa.func.round(n), sa.Integer()), sa.func.substr(t, 13, 3))


def diff_ms_sql(a: Col, b: Col, env: SqlEnv) -> Col:
    if env.pg:
        return sa.extract("epoch", a - b) * 1000
    micro = sa.cast(sa.func.substr(a, 13, 3), sa.Float()) - sa.cast(sa.func.substr(b, 13, 3), sa.Float())
    return sa.cast(_sqlite_ms(a) - _sqlite_ms(b), sa.Float()) + micro / 1000.0


# --- TIMEVALUE ------------------------------------------------------------------------------------------------

def _timevalue_typer(args: tuple[TNode, ...]) -> str:
    if args[0].type not in (TEXT, DATETIME, TIME, NULL):
        raise ArgError(0, f"TIMEVALUE takes text or a datetime, not {args[0].type}", "text or datetime",
                       args[0].type)
    return TIME


def _timevalue_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    if types[0] == DATETIME:
        return lambda v: v.time().replace(microsecond=v.microsecond // 1000 * 1000)
    if types[0] == TIME:
        return lambda v: v

    def parse(s: str) -> dt.time | None:
        m = _TIME_TEXT.match(s.strip())
        if not m:
            return None
        hh, mm, ss, frac = m.groups()
        return dt.time(int(hh), int(mm), int(ss), int((frac or "0").ljust(3, "0")) * 1000)

    return parse


def _timevalue_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    x, t = args[0], nodes[0].type
    if t == TIME:
        return x
    if t == DATETIME:
        if env.pg:
            return sa.cast(sa.func.date_trunc("milliseconds", x), sa.Time())
        return text(sa.func.substr(sqlite_dt(x), 12))
    s = sa.func.trim(x)
    if env.pg:
        return sa.cast(sa.case((s.op("~")(text_lit(_PG_TIME_RE)), s)), sa.Time())
    frac = sa.func.substr(s, 10)
    ok = sa.and_(sa.func.substr(s, 1, 8).op("GLOB")(text_lit("[0-2][0-9]:[0-5][0-9]:[0-5][0-9]")),
                 sa.func.substr(s, 1, 2) <= "23",
                 sa.or_(sa.func.length(s) == 8,
                        sa.and_(sa.func.substr(s, 9, 1) == ".", sa.func.length(s).between(10, 12),
                                frac.op("NOT GLOB")(text_lit("*[^0-9]*")))))
    normal = sa.func.substr(s, 1, 8).op("||")(text_lit(".")).op("||")(
        sa.func.substr(frac.op("||")(text_lit("000000")), 1, 6))
    return text(sa.case((ok, normal)))


# --- taking times apart ---------------------------------------------------------------------------------------

def _part(name: str) -> tuple[Callable[[tuple[str, ...], str], Callable[..., Any]],
                              Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]]:
    getters: dict[str, Callable[[dt.time], int]] = {
        "hour": lambda t: t.hour, "minute": lambda t: t.minute, "second": lambda t: t.second,
        "millisecond": lambda t: t.microsecond // 1000,
    }
    get = getters[name]
    start, length = {"hour": (1, 2), "minute": (4, 2), "second": (7, 2), "millisecond": (10, 3)}[name]

    def py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
        return lambda t: Decimal(get(t))

    def sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
        x = args[0]
        if env.pg:
            if name in ("hour", "minute"):
                return sa.extract(name, x)
            micro = sa.extract("microseconds", x)
            if name == "second":
                return sa.func.floor(micro / 1_000_000)
            return sa.func.floor(sa.func.mod(micro, 1_000_000) / 1000)
        return as_num(sa.cast(sa.func.substr(x, start, length), sa.Integer()), env)

    return py, sql


_hour_py, _hour_sql = _part("hour")
_minute_py, _minute_sql = _part("minute")
_second_py, _second_sql = _part("second")
_ms_py, _ms_sql = _part("millisecond")
_T1 = sig((S_TIME,), NUMBER)
_CAT = "Date and time"

ROWS = [
    Fn("TIMEVALUE", "TIMEVALUE(text_or_datetime)", "A time of day from text written HH:MM:SS or HH:MM:SS.mmm, or "
       "the time (GMT) of a datetime; blank when the text is not a time.", 1, 1, _timevalue_typer,
       py=_timevalue_py, sql=_timevalue_sql, category=_CAT),
    Fn("HOUR", "HOUR(time)", "The hour, 0-23.", 1, 1, _T1, py=_hour_py, sql=_hour_sql, category=_CAT),
    Fn("MINUTE", "MINUTE(time)", "The minute, 0-59.", 1, 1, _T1, py=_minute_py, sql=_minute_sql, category=_CAT),
    Fn("SECOND", "SECOND(time)", "The second, 0-59.", 1, 1, _T1, py=_second_py, sql=_second_sql, category=_CAT),
    Fn("MILLISECOND", "MILLISECOND(time)", "The millisecond, 0-999.", 1, 1, _T1, py=_ms_py, sql=_ms_sql,
       category=_CAT),
]
