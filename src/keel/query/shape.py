"""Result shaping: database rows to the exact JSON-ready records of salesforce-api.md §2.4.

A plan carries a shape tree built at compile time, where each entry is a closure that reads one row position and
formats it, so shaping a page is a loop over precomputed getters, with no per-row type dispatch. Getters accept the
raw values of both drivers (SQLite returns datetimes as text, psycopg as ``datetime``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keel.metadata.values import format_datetime, format_time
from keel.storage import ids

Row = Sequence[Any]
Getter = Callable[[Row], Any]


def _number(scale0: bool) -> Callable[[Any], Any]:
    def conv(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        f = float(v) if isinstance(v, Decimal) else v
        if scale0 and float(f).is_integer():
            return int(f)
        return f

    return conv


def _datetime(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):  # SQLite: 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        base = v[:19].replace(" ", "T")
        frac = v[20:23] if len(v) > 20 else ""
        return f"{base}.{frac.ljust(3, '0')}+0000"
    if isinstance(v, dt.datetime):
        return format_datetime(v)
    return str(v)


def _date(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        return v[:10]
    if isinstance(v, dt.datetime):
        return v.date().isoformat()
    return v.isoformat() if isinstance(v, dt.date) else str(v)


def _time(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        base = v[:8]
        frac = v[9:12] if len(v) > 9 else ""
        return f"{base}.{frac.ljust(3, '0')}Z"
    return format_time(v) if isinstance(v, dt.time) else str(v)


def _bool(v: Any) -> Any:
    return None if v is None else bool(v)


def _plain(v: Any) -> Any:
    return v


def converter(typ: str, scale: int | None = None) -> Callable[[Any], Any]:
    """A value converter for an effective field type (or a computed value's type)."""
    if typ in ("number", "currency", "percent", "rollup", "float"):
        return _number(scale == 0)
    if typ == "int":
        return _number(True)
    if typ == "datetime":
        return _datetime
    if typ == "date":
        return _date
    if typ == "time":
        return _time
    if typ == "checkbox":
        return _bool
    return _plain


def value_getter(idx: int, conv: Callable[[Any], Any]) -> Getter:
    if conv is _plain:
        return lambda row: row[idx]
    return lambda row: conv(row[idx])


def id_getter(idx: int, prefix: str | None, type_idx: int | None) -> Getter:
    """An 18-character id from an integer key; the prefix is static, or read from a polymorphic type column."""
    if type_idx is None:
        assert prefix is not None

        def get(row: Row) -> Any:
            v = row[idx]
            return None if v is None else ids.encode(prefix, int(v))

        return get

    def get_poly(row: Row) -> Any:
        v = row[idx]
        p = row[type_idx]
        return None if v is None or not p else ids.encode(p, int(v))

    return get_poly


@dataclass
class ObjShape:
    """How to build one record (or nested parent) from a row."""

    type_name: str  # static type; for a polymorphic parent the type comes from ``type_idx``
    id_get: Getter  # the 18-character id, or None for an empty parent
    type_idx: int | None = None
    type_names: dict[str, str] = field(default_factory=dict)  # key prefix -> API name, for polymorphic parents
    entries: list[tuple[str, str, Any]] = field(default_factory=list)  # (kind, key, payload)
    typeof: dict[str, list[tuple[str, str, Any]]] = field(default_factory=dict)  # per-type entries (TYPEOF)

    def entry(self, kind: str, key: str, payload: Any) -> None:
        self.entries.append((kind, key, payload))

    def parent(self, key: str, make: Callable[[], ObjShape]) -> ObjShape:
        for kind, k, payload in self.entries:
            if kind == "p" and k.lower() == key.lower():
                assert isinstance(payload, ObjShape)
                return payload
        child = make()
        self.entries.append(("p", key, child))
        return child

    def has(self, key: str) -> bool:
        low = key.lower()
        return any(k.lower() == low for kind, k, _ in self.entries if kind in ("v", "p", "c", "t"))


ChildRows = dict[int, dict[str, Any]]  # per root row position: child key -> child result


def build_record(shape: ObjShape, row: Row, base_url: str, children: dict[str, Any] | None = None) -> Any:
    rid = shape.id_get(row)
    if rid is None:
        return None
    if shape.type_idx is not None:
        type_name = shape.type_names.get(row[shape.type_idx] or "", shape.type_name)
    else:
        type_name = shape.type_name
    rec: dict[str, Any] = {"attributes": {"type": type_name, "url": f"{base_url}/sobjects/{type_name}/{rid}"}}
    entries = shape.entries
    if shape.typeof:
        entries = shape.typeof.get(type_name, shape.typeof.get("", []))
    for kind, key, payload in entries:
        if kind == "v":
            rec[key] = payload(row)
        elif kind == "p":
            rec[key] = build_record(payload, row, base_url)
        elif kind == "c":
            rec[key] = children.get(key) if children else None
        elif kind == "t":
            rec[key] = build_record(payload, row, base_url)
    return rec


@dataclass
class AggShape:
    entries: list[tuple[str, Getter]] = field(default_factory=list)

    def build(self, row: Row) -> dict[str, Any]:
        rec: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        for key, get in self.entries:
            rec[key] = get(row)
        return rec
