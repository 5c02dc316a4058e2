"""Date literals (``TODAY``, ``LAST_N_DAYS:7``, ``THIS_FISCAL_QUARTER`` …) as half-open ranges.

A literal names a span of local days in the running user's time zone. Date fields compare against the local dates;
datetime fields compare against the UTC instants of local midnight, so "TODAY" means the user's today on both.
Ranges are evaluated at execution time (not compile time), so a cached plan never goes stale at midnight.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

DateRange = tuple[dt.date, dt.date]  # [start, end)


def _month_add(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.month - 1 + months, 12)
    return dt.date(d.year + y, m + 1, 1)


def _quarter_start(d: dt.date, first_month: int = 1) -> dt.date:
    """Start of the (fiscal) quarter containing ``d`` when quarters are aligned to ``first_month``."""
    offset = (d.month - first_month) % 3
    return _month_add(dt.date(d.year, d.month, 1), -offset)


def _year_start(d: dt.date, first_month: int = 1) -> dt.date:
    y = d.year if d.month >= first_month else d.year - 1
    return dt.date(y, first_month, 1)


def _week_start(d: dt.date) -> dt.date:
    return d - dt.timedelta(days=(d.weekday() + 1) % 7)  # weeks start on Sunday (en_US)


def local_today(now: dt.datetime, time_zone: str) -> dt.date:
    aware = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    return aware.astimezone(ZoneInfo(time_zone)).date()


def date_range(name: str, n: int | None, today: dt.date, fiscal_start_month: int = 1) -> DateRange:
    """The local-date range a literal denotes."""
    day = dt.timedelta(days=1)
    fixed: dict[str, tuple[str, int]] = {
        "YESTERDAY": ("day", -1), "TODAY": ("day", 0), "TOMORROW": ("day", 1),
        "LAST_WEEK": ("week", -1), "THIS_WEEK": ("week", 0), "NEXT_WEEK": ("week", 1),
        "LAST_MONTH": ("month", -1), "THIS_MONTH": ("month", 0), "NEXT_MONTH": ("month", 1),
        "LAST_QUARTER": ("quarter", -1), "THIS_QUARTER": ("quarter", 0), "NEXT_QUARTER": ("quarter", 1),
        "LAST_YEAR": ("year", -1), "THIS_YEAR": ("year", 0), "NEXT_YEAR": ("year", 1),
        "LAST_FISCAL_QUARTER": ("fquarter", -1), "THIS_FISCAL_QUARTER": ("fquarter", 0),
        "NEXT_FISCAL_QUARTER": ("fquarter", 1),
        "LAST_FISCAL_YEAR": ("fyear", -1), "THIS_FISCAL_YEAR": ("fyear", 0), "NEXT_FISCAL_YEAR": ("fyear", 1),
    }
    if name == "LAST_90_DAYS":
        return today - 90 * day, today + day
    if name == "NEXT_90_DAYS":
        return today + day, today + 91 * day
    if name in fixed:
        unit, k = fixed[name]
        start, length = _unit_start(unit, today, fiscal_start_month)
        s = _shift(unit, start, k, length)
        return s, _shift(unit, s, 1, length)
    assert n is not None
    unit_word = name.split("_N_")[-1] if "_N_" in name else name[2:-4]  # LAST_N_DAYS / N_DAYS_AGO
    unit = {"DAYS": "day", "WEEKS": "week", "MONTHS": "month", "QUARTERS": "quarter", "YEARS": "year",
            "FISCAL_QUARTERS": "fquarter", "FISCAL_YEARS": "fyear"}[unit_word]
    start, length = _unit_start(unit, today, fiscal_start_month)
    if name.startswith("LAST_N_"):
        if unit == "day":  # Salesforce: today and the n days before it
            return today - n * day, today + day
        return _shift(unit, start, -n, length), start
    if name.startswith("NEXT_N_"):
        nxt = _shift(unit, start, 1, length)
        return nxt, _shift(unit, nxt, n, length)
    s = _shift(unit, start, -n, length)  # N_<unit>_AGO
    return s, _shift(unit, s, 1, length)


def _unit_start(unit: str, today: dt.date, fiscal: int) -> tuple[dt.date, int]:
    if unit == "day":
        return today, 0
    if unit == "week":
        return _week_start(today), 0
    if unit == "month":
        return dt.date(today.year, today.month, 1), 1
    if unit == "quarter":
        return _quarter_start(today), 3
    if unit == "fquarter":
        return _quarter_start(today, fiscal), 3
    if unit == "year":
        return dt.date(today.year, 1, 1), 12
    return _year_start(today, fiscal), 12


def _shift(unit: str, d: dt.date, k: int, months: int) -> dt.date:
    if unit == "day":
        return d + dt.timedelta(days=k)
    if unit == "week":
        return d + dt.timedelta(days=7 * k)
    return _month_add(d, months * k)


def utc_bounds(rng: DateRange, time_zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Naive-UTC instants of local midnight at both ends of a date range."""
    tz = ZoneInfo(time_zone)

    def conv(d: dt.date) -> dt.datetime:
        return dt.datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(dt.UTC).replace(tzinfo=None)

    return conv(rng[0]), conv(rng[1])
