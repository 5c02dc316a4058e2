"""Dates and times: TODAY NOW DATE DATEVALUE DATETIMEVALUE YEAR MONTH DAY WEEKDAY ADDMONTHS.

Datetimes are naive UTC, as stored. TODAY() is the date in the user's time zone (from the context); DATEVALUE of a
datetime and TEXT of a datetime use GMT, as Salesforce does. Impossible dates (February 30) give blank, never an
error, on every back end.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from keel.formula.fn import (
    S_DATE,
    S_NUM,
    S_TEXT,
    ArgError,
    Closure,
    Col,
    Fn,
    SqlEnv,
    as_int,
    as_num,
    date_lit,
    datetime_lit,
    int_lit,
    sig,
    sqlite_dt,
    text,
    text_lit,
)
from keel.formula.typed import DATE, DATETIME, NUMBER, TEXT, TNode

_DATE_TEXT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME_TEXT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?: ([01]\d|2[0-3]):([0-5]\d):([0-5]\d))?$")
_PG_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_PG_DATETIME_RE = r"^\d{4}-\d{2}-\d{2}( ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])?$"


def _today_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    return lambda r, c: c.today


def _now_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    return lambda r, c: c.now


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _today_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    if env.context is not None:
        return date_lit(env.context.today, env)
    return _now_sql(args, nodes, ret, env).cast(sa.Date()) if env.pg else text(sa.func.date("now"))


def _now_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    if env.context is not None:
        return datetime_lit(env.context.now, env)
    if env.pg:
        return sa.bindparam(None, type_=sa.DateTime(), callable_=_utcnow)
    return sqlite_dt(text_lit("now"))


# --- building dates -------------------------------------------------------------------------------------------

def make_date(y: Any, m: Any, d: Any) -> dt.date | None:
    try:
        yy, mm, dd = int(y), int(m), int(d)
        if not 1 <= yy <= 9999:
            return None
        return dt.date(yy, mm, dd)
    except (ValueError, OverflowError):
        return None


def _date_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return make_date


def safe_date_sql(y: Col, m: Col, d: Col, env: SqlEnv) -> Col:
    """DATE(y, m, d) in SQL, blank when the date does not exist."""
    yi, mi, di = as_int(y, env), as_int(m, env), as_int(d, env)
    in_range = sa.and_(yi.between(1, 9999), mi.between(1, 12), di.between(1, 31))
    if env.pg:
        base = sa.func.make_date(sa.func.greatest(sa.func.least(yi, 9999), 1), 1, 1)
        months = sa.func.make_interval(0, sa.func.greatest(sa.func.least(mi, 12), 1) - 1)
        built = sa.cast(base + months, sa.Date()) + (sa.func.greatest(sa.func.least(di, 31), 1) - 1)
        return sa.case((sa.and_(in_range, sa.extract("day", built) == di), built))
    s = sa.func.printf("%04d-%02d-%02d", yi, mi, di)
    return text(sa.case((sa.and_(in_range, sa.func.date(sa.func.julianday(s)) == s), s)))


def _date_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return safe_date_sql(args[0], args[1], args[2], env)


def _datevalue_typer(args: tuple[TNode, ...]) -> str:
    if args[0].type not in (TEXT, DATETIME, DATE, "null"):
        raise ArgError(0, f"DATEVALUE takes text or a datetime, not {args[0].type}", "text or datetime",
                       args[0].type)
    return DATE


def _datevalue_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    if types[0] == DATETIME:
        return lambda v: v.date()
    if types[0] == DATE:
        return lambda v: v

    def parse(s: str) -> dt.date | None:
        m = _DATE_TEXT.match(s.strip())
        return make_date(*m.groups()) if m else None

    return parse


def _parts_pg(s: Col, pattern: str, fallback: str) -> Col:
    return sa.case((s.op("~")(text_lit(pattern)), s), else_=text_lit(fallback))


def _datevalue_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    x, t = args[0], nodes[0].type
    if t == DATE:
        return x
    if t == DATETIME:
        return sa.cast(x, sa.Date()) if env.pg else text(sa.func.date(x))
    s = sa.func.trim(x)
    if env.pg:
        safe = _parts_pg(s, _PG_DATE_RE, "0001-01-01")
        part = [sa.cast(sa.func.substr(safe, a, n), sa.Integer()) for a, n in ((1, 4), (6, 2), (9, 2))]
        return sa.case((s.op("~")(text_lit(_PG_DATE_RE)), safe_date_sql(part[0], part[1], part[2], env)))
    shape = s.op("GLOB")(text_lit("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"))
    return text(sa.case((sa.and_(shape, sa.func.date(sa.func.julianday(s)) == s), s)))


def _datetimevalue_typer(args: tuple[TNode, ...]) -> str:
    if args[0].type not in (TEXT, DATE, DATETIME, "null"):
        raise ArgError(0, f"DATETIMEVALUE takes text or a date, not {args[0].type}", "text or date", args[0].type)
    return DATETIME


def _datetimevalue_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    if types[0] == DATE:
        return lambda d: dt.datetime(d.year, d.month, d.day)
    if types[0] == DATETIME:
        return lambda v: v

    def parse(s: str) -> dt.datetime | None:
        m = _DATETIME_TEXT.match(s.strip())
        if not m:
            return None
        day = make_date(*m.groups()[:3])
        if day is None:
            return None
        hh, mm, ss = (int(g or 0) for g in m.groups()[3:])
        return dt.datetime(day.year, day.month, day.day, hh, mm, ss)

    return parse


def _datetimevalue_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    x, t = args[0], nodes[0].type
    if t == DATETIME:
        return x
    if t == DATE:
        return sa.cast(x, sa.DateTime()) if env.pg else text(x.op("||")(text_lit(" 00:00:00.000000")))
    s = sa.func.trim(x)
    if env.pg:
        safe = _parts_pg(s, _PG_DATETIME_RE, "0001-01-01")
        part = [sa.cast(sa.func.substr(safe, a, n), sa.Integer()) for a, n in ((1, 4), (6, 2), (9, 2))]
        day = safe_date_sql(part[0], part[1], part[2], env)
        clock: Col = sa.func.coalesce(sa.func.nullif(sa.func.substr(safe, 12), ""), "00:00:00")
        when = sa.cast(day, sa.DateTime()) + sa.cast(clock, sa.Interval())
        return sa.case((s.op("~")(text_lit(_PG_DATETIME_RE)), when))
    day_part = sa.func.substr(s, 1, 10)
    date_ok = sa.and_(day_part.op("GLOB")(text_lit("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]")),
                      sa.func.date(sa.func.julianday(day_part)) == day_part)
    clock = sa.func.substr(s, 12)
    clock_ok = sa.or_(sa.func.length(s) == 10,
                      sa.and_(sa.func.substr(s, 11, 1) == " ",
                              clock.op("GLOB")(text_lit("[0-2][0-9]:[0-5][0-9]:[0-5][0-9]")),
                              sa.func.substr(clock, 1, 2) <= "23"))
    return sa.case((sa.and_(date_ok, clock_ok), sqlite_dt(s)))


# --- taking dates apart ---------------------------------------------------------------------------------------

def _part(name: str) -> tuple[Callable[[tuple[str, ...], str], Callable[..., Any]],
                              Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]]:
    getters: dict[str, Callable[[dt.date], int]] = {
        "year": lambda d: d.year, "month": lambda d: d.month, "day": lambda d: d.day,
        "weekday": lambda d: d.isoweekday() % 7 + 1,
    }
    get = getters[name]
    fmt = {"year": "%Y", "month": "%m", "day": "%d", "weekday": "%w"}[name]

    def py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
        return lambda d: Decimal(get(d))

    def sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
        if env.pg:
            if name == "weekday":
                return sa.extract("dow", args[0]) + 1
            return sa.extract(name, args[0])
        v = sa.cast(sa.func.strftime(fmt, args[0]), sa.Integer())
        return as_num(v + 1 if name == "weekday" else v, env)

    return py, sql


def add_months(d: dt.date, n: Decimal) -> dt.date | None:
    """Salesforce: the same day n months later, clamped to the month's end; a month-end stays a month-end."""
    total = d.year * 12 + d.month - 1 + int(n)
    y, m = divmod(total, 12)
    if not 1 <= y <= 9999:
        return None
    last = calendar.monthrange(y, m + 1)[1]
    end_of_month = d.day == calendar.monthrange(d.year, d.month)[1]
    return dt.date(y, m + 1, last if end_of_month else min(d.day, last))


def _addmonths_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return add_months


def _addmonths_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    d, n = args[0], as_int(args[1], env)
    if env.pg:
        month_start = sa.func.date_trunc("month", d)
        is_end: Col = d == sa.cast(month_start + sa.text("interval '1 month'") - sa.text("interval '1 day'"), sa.Date())
        target_end: Col = sa.cast(month_start + sa.func.make_interval(0, n + 1) - sa.text("interval '1 day'"),
                             sa.Date())
        plain = sa.cast(d + sa.func.make_interval(0, n), sa.Date())
        return sa.case((is_end, target_end), else_=plain)
    months = sa.func.printf("%+d months", n)
    target_start: Col = sa.func.date(d, "start of month", months)
    sqlite_end: Col = sa.func.date(target_start, "+1 month", "-1 day")
    sqlite_is_end: Col = sa.func.strftime("%d", d, "+1 day") == "01"
    day = sa.cast(sa.func.strftime("%d", d), sa.Integer())
    clamp = day > sa.cast(sa.func.strftime("%d", sqlite_end), sa.Integer())
    shifted: Col = sa.func.date(target_start, sa.func.printf("+%d days", day - 1))
    return text(sa.case((sa.or_(sqlite_is_end, clamp), sqlite_end), else_=shifted))


_year_py, _year_sql = _part("year")
_month_py, _month_sql = _part("month")
_day_py, _day_sql = _part("day")
_weekday_py, _weekday_sql = _part("weekday")
_D1 = sig((S_DATE,), NUMBER)

ROWS = [
    Fn("TODAY", "TODAY()", "Today's date in the user's time zone.", 0, 0, sig((), DATE), lazy=_today_lazy,
       sql=_today_sql, category="Date and time"),
    Fn("NOW", "NOW()", "The current datetime (UTC).", 0, 0, sig((), DATETIME), lazy=_now_lazy, sql=_now_sql,
       category="Date and time"),
    Fn("DATE", "DATE(year, month, day)", "A date from its parts; blank when it does not exist.", 3, 3,
       sig((S_NUM, S_NUM, S_NUM), DATE), py=_date_py, sql=_date_sql, category="Date and time"),
    Fn("DATEVALUE", "DATEVALUE(text_or_datetime)", "The date of a datetime (in GMT), or of text written "
       "YYYY-MM-DD; blank when the text is not a date.", 1, 1, _datevalue_typer, py=_datevalue_py,
       sql=_datevalue_sql, category="Date and time"),
    Fn("DATETIMEVALUE", "DATETIMEVALUE(text_or_date)", "A datetime (GMT) from text written YYYY-MM-DD HH:MM:SS "
       "or YYYY-MM-DD, or from a date (midnight GMT).", 1, 1, _datetimevalue_typer, py=_datetimevalue_py,
       sql=_datetimevalue_sql, category="Date and time"),
    Fn("YEAR", "YEAR(date)", "The year.", 1, 1, _D1, py=_year_py, sql=_year_sql, category="Date and time"),
    Fn("MONTH", "MONTH(date)", "The month, 1-12.", 1, 1, _D1, py=_month_py, sql=_month_sql,
       category="Date and time"),
    Fn("DAY", "DAY(date)", "The day of the month, 1-31.", 1, 1, _D1, py=_day_py, sql=_day_sql,
       category="Date and time"),
    Fn("WEEKDAY", "WEEKDAY(date)", "The day of the week: 1 = Sunday … 7 = Saturday.", 1, 1, _D1, py=_weekday_py,
       sql=_weekday_sql, category="Date and time"),
    Fn("ADDMONTHS", "ADDMONTHS(date, months)", "The date months later (or earlier), clamped to the end of the "
       "month; the last day of a month stays the last day.", 2, 2, sig((S_DATE, S_NUM), DATE),
       py=_addmonths_py, sql=_addmonths_sql, category="Date and time"),
]

_unused = (S_TEXT, int_lit)
