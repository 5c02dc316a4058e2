"""Parsing of typed values from the many forms clients send.

django-salesforce sends numbers and booleans as strings and datetimes as ``+HHMM``; jsforce sends ``Z``;
simple-salesforce sends ``+00:00``, or even a trailing ``:`` for naive datetimes. Salesforce accepts them all, so
these parsers do too. Datetimes are normalised to naive UTC, which is how they are stored.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation

_DT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2}|:)?$"
)
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?Z?$")
_UTC_SUFFIXES = ("Z", "+0000", "+00:00")
_TRUE = frozenset({"true", "1", "yes", "y", "t", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "f", "off", ""})


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601-ish datetime into naive UTC; raise ValueError when it is not one."""
    if len(text) > 10:  # the common, fast case; the regex below handles the quirks
        iso = text
        if text.endswith(_UTC_SUFFIXES):  # UTC already, the usual case: no time zone arithmetic
            iso = text[:-1] if text[-1] == "Z" else text[:-5] if text[-3] != ":" else text[:-6]
        elif text[-5] in "+-" and text[-4:].isdigit():  # ``+0100`` (django-salesforce): fromisoformat wants ``+01:00``
            iso = f"{text[:-2]}:{text[-2:]}"
        try:
            dt = datetime.fromisoformat(iso)
        except ValueError:
            pass
        else:
            if dt.tzinfo is not None:
                offset = dt.utcoffset()
                dt = dt.replace(tzinfo=None)
                if offset:
                    dt -= offset
            return dt
    m = _DT.match(text.strip())
    if not m:
        raise ValueError(text)
    y, mo, d, hh, mm, ss, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0), micro)
    if tz and tz not in ("Z", ":"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        dt = dt.replace(tzinfo=timezone(sign * offset)).astimezone(UTC).replace(tzinfo=None)
    return dt


def parse_date(text: str) -> date:
    s = text.strip()
    if len(s) == 10:
        return date.fromisoformat(s)
    return parse_datetime(s).date()


def parse_time(text: str) -> time:
    m = _TIME.match(text.strip())
    if not m:
        raise ValueError(text)
    hh, mm, ss, frac = m.groups()
    return time(int(hh), int(mm), int(ss or 0), int((frac or "0")[:6].ljust(6, "0")))


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ValueError(value)


def parse_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            d = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            raise ValueError(value) from None
        if not d.is_finite():
            raise ValueError(value)
        return d
    raise ValueError(value)


def format_datetime(dt: datetime) -> str:
    """Salesforce's wire form: ``YYYY-MM-DDTHH:MM:SS.sss+0000`` (django-salesforce parses exactly this)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}+0000"


def format_time(t: time) -> str:
    return f"{t:%H:%M:%S}.{t.microsecond // 1000:03d}Z"
