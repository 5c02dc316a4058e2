"""Python values to the database's bind form on the fast write path, matching what SQLAlchemy Core writes.

The lifecycle writes through the DBAPI cursor directly (executemany, or COPY on PostgreSQL) because per-row
SQLAlchemy processing would cost more than the whole rest of the lifecycle. Reads go through SQLAlchemy types, so
SQLite's text forms here must be exactly SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from keel.metadata.model import FieldDef
from keel.metadata.types import storage_of

Encoder = Callable[[Any], Any]


def sqlite_datetime(v: Any) -> Any:
    if v is None:
        return None
    d: datetime = v
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f".{d.microsecond:06d}")


def sqlite_date(v: Any) -> Any:
    return None if v is None else f"{v.year:04d}-{v.month:02d}-{v.day:02d}"


def _sqlite_time(v: Any) -> Any:
    if v is None:
        return None
    t: time = v
    return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}"


def _sqlite_number(v: Any) -> Any:
    return float(v) if isinstance(v, Decimal) else v


def _sqlite_bool(v: Any) -> Any:
    return None if v is None else (1 if v else 0)


def _identity(v: Any) -> Any:
    return v


def encoder(f: FieldDef, dialect: str) -> Encoder:
    if dialect != "sqlite":
        return _identity
    storage = storage_of(f)
    return {
        "datetime": sqlite_datetime,
        "date": sqlite_date,
        "time": _sqlite_time,
        "number": _sqlite_number,
        "boolean": _sqlite_bool,
    }.get(storage, _identity)


def _storage(f: FieldDef) -> str:
    return storage_of(f)


def layout_kind(f: FieldDef, dialect: str) -> str:
    """How the generated row builder (``fastpath``) writes this field: an inlined form, ``plain``, or ``call``.

    On PostgreSQL rows go out by binary COPY, which accepts only the column's exact Python type, so every kind
    there checks the type inline and converts the rare other value (a float, a string set by automation)."""
    storage = _storage(f)
    if dialect != "sqlite":
        return f"pg-{storage}" if storage in PG_CONVERT else "plain"
    return {"datetime": "sqlite-datetime", "date": "sqlite-date", "number": "sqlite-number",
            "boolean": "sqlite-boolean", "time": "call"}.get(storage, "plain")


PG_COPY_TYPES = {"text": "text", "number": "numeric", "boolean": "bool", "date": "date", "datetime": "timestamp",
                 "time": "time", "reference": "int8", "id": "int8"}


def pg_copy_type(f: FieldDef) -> str:
    """The PostgreSQL type name binary COPY sends this field's column as."""
    return "int8" if f.type == "id" else PG_COPY_TYPES[_storage(f)]


def _pg_number(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, int | Decimal):
        return v
    return Decimal(str(v))


def _pg_date(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v)[:10])


def _pg_datetime(v: Any) -> Any:
    if isinstance(v, datetime):
        return v if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    return _pg_datetime(datetime.fromisoformat(str(v).replace("Z", "+00:00")))


def _pg_time(v: Any) -> Any:
    return v if isinstance(v, time) else time.fromisoformat(str(v).rstrip("Z"))


def _pg_text(v: Any) -> Any:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


# storage -> (the Python type binary COPY takes, or a tuple of them; the converter for anything else)
PG_CONVERT: dict[str, tuple[tuple[type, ...], Encoder]] = {
    "number": ((Decimal, int), _pg_number), "date": ((date,), _pg_date), "datetime": ((datetime,), _pg_datetime),
    "time": ((time,), _pg_time), "boolean": ((bool,), bool), "text": ((str,), _pg_text),
}


def encode_datetime(v: datetime, dialect: str) -> Any:
    return sqlite_datetime(v) if dialect == "sqlite" else v


def history_text(v: Any) -> str | None:
    """A value as history shows it: stable text, independent of the database."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat(timespec="milliseconds") + "Z"
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, float | Decimal):
        return format(Decimal(str(v)).normalize(), "f")  # 150, 150.0 and 150.00 read the same on both databases
    return str(v)
