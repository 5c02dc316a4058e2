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
encode_id = ids.encode  # ids on a page share their high digits; the codec's fast path handles that


def _number(scale0: bool) -> Callable[[Any], Any]:
    """JSON numbers: floats stay floats (SQLite), Decimals become floats (PostgreSQL), whole values of
    scale-0 fields become ints."""
    if scale0:
        def conv_int(v: Any) -> Any:
            if v is None or v.__class__ is int:
                return v
            f = float(v)
            return int(f) if f.is_integer() else f

        return conv_int

    def conv(v: Any) -> Any:
        if v is None or v.__class__ is float:
            return v
        return float(v) if isinstance(v, Decimal | int) and not isinstance(v, bool) else v

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


class ValueGet:
    """Reads and converts one row position; the shape compiler inlines it."""

    __slots__ = ("conv", "idx")

    def __init__(self, idx: int, conv: Callable[[Any], Any]) -> None:
        self.idx, self.conv = idx, conv

    def __call__(self, row: Row) -> Any:
        return self.conv(row[self.idx])


class IdGet:
    """An 18-character id from an integer key; the prefix is static, or read from a polymorphic type column."""

    __slots__ = ("idx", "prefix", "type_idx")

    def __init__(self, idx: int, prefix: str | None, type_idx: int | None) -> None:
        self.idx, self.prefix, self.type_idx = idx, prefix, type_idx

    def __call__(self, row: Row) -> Any:
        v = row[self.idx]
        p = self.prefix if self.type_idx is None else row[self.type_idx]
        return None if v is None or not p else encode_id(p, int(v))


def value_getter(idx: int, conv: Callable[[Any], Any]) -> Getter:
    return ValueGet(idx, conv)


def id_getter(idx: int, prefix: str | None, type_idx: int | None) -> Getter:
    return IdGet(idx, prefix, type_idx)


@dataclass
class ObjShape:
    """How to build one record (or nested parent) from a row."""

    type_name: str  # static type; for a polymorphic parent the type comes from ``type_idx``
    id_get: Getter  # the 18-character id, or None for an empty parent
    type_idx: int | None = None
    type_names: dict[str, str] = field(default_factory=dict)  # key prefix -> API name, for polymorphic parents
    entries: list[tuple[str, str, Any]] = field(default_factory=list)  # (kind, key, payload)
    typeof: dict[str, list[tuple[str, str, Any]]] = field(default_factory=dict)  # per-type entries (TYPEOF)
    keys: set[str] = field(default_factory=set, compare=False, repr=False)  # lower-cased keys of ``entries``
    parents: dict[str, ObjShape] = field(default_factory=dict, compare=False, repr=False)  # by lower-cased key

    def entry(self, kind: str, key: str, payload: Any) -> None:
        self.entries.append((kind, key, payload))
        self.keys.add(key.lower())

    def parent(self, key: str, make: Callable[[], ObjShape]) -> ObjShape:
        low = key.lower()
        hit = self.parents.get(low)
        if hit is None:
            hit = self.parents[low] = make()
            self.entry("p", key, hit)
        return hit

    def has(self, key: str) -> bool:
        return key.lower() in self.keys


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
        elif kind == "i":
            rec[key] = rid
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


def compile_shape(shape: ObjShape) -> Callable[[str], Callable[[Row, dict[str, Any] | None], Any]]:
    """Generate a Python function that builds a record from a row with one dict literal per object.

    Shaping runs once per returned row, so the generic ``build_record`` loop is specialised at plan time. Every
    key and type name is embedded with ``repr`` and every value is read by row position, so the generated code
    contains no user input; TYPEOF parents fall back to ``build_record``. The result is a factory taking the URL
    base (``/services/data/vNN.N``) so per-type URL prefixes are computed once per page, not once per row."""
    ns: dict[str, Any] = {"enc": encode_id, "build_record": build_record}
    head = ["def _make(base):"]
    lines = ["    def _build(row, kids):"]
    counter = [0]
    prefixes: dict[str, str] = {}

    def const(value: Any) -> str:
        counter[0] += 1
        name = f"k{counter[0]}"
        ns[name] = value
        return name

    def url_prefix(type_name: str) -> str:
        if type_name not in prefixes:
            prefixes[type_name] = f"u{len(prefixes)}"
            head.append(f"    {prefixes[type_name]} = base + {('/sobjects/' + type_name + '/')!r}")
        return prefixes[type_name]

    def value_expr(get: Any) -> str:
        if isinstance(get, ValueGet):
            return f"row[{get.idx}]" if get.conv is _plain else f"{const(get.conv)}(row[{get.idx}])"
        return f"{const(get)}(row)"

    def emit(sh: ObjShape, target: str, indent: str, root: bool) -> None:
        n = counter[0] = counter[0] + 1
        rid = f"rid{n}"
        get = sh.id_get
        if sh.typeof or not isinstance(get, IdGet):
            lines.append(f"{indent}{target} = build_record({const(sh)}, row, base{', kids' if root else ''})")
            return
        v = f"row[{get.idx}]"
        inner = indent + "    "
        if sh.type_idx is None:
            assert get.prefix is not None
            lines.append(f"{indent}if {v} is None:")
            lines.append(f"{indent}    {target} = None")
            lines.append(f"{indent}else:")
            lines.append(f"{inner}{rid} = enc({get.prefix!r}, {v})")
            attrs = f"{{'type': {sh.type_name!r}, 'url': {url_prefix(sh.type_name)} + {rid}}}"
        else:
            tn = f"tn{n}"
            lines.append(f"{indent}if {v} is None or not row[{sh.type_idx}]:")
            lines.append(f"{indent}    {target} = None")
            lines.append(f"{indent}else:")
            lines.append(f"{inner}{rid} = enc(row[{sh.type_idx}], {v})")
            lines.append(f"{inner}{tn} = {const(sh.type_names)}.get(row[{sh.type_idx}], {sh.type_name!r})")
            attrs = f"{{'type': {tn}, 'url': base + '/sobjects/' + {tn} + '/' + {rid}}}"
        parts = [f"'attributes': {attrs}"]
        for kind, key, payload in sh.entries:
            if kind == "v":
                parts.append(f"{key!r}: {value_expr(payload)}")
            elif kind == "i":
                parts.append(f"{key!r}: {rid}")
            elif kind in ("p", "t"):
                sub = f"par{counter[0] + 1}"
                emit(payload, sub, inner, False)
                parts.append(f"{key!r}: {sub}")
            elif kind == "c":
                parts.append(f"{key!r}: (kids.get({key!r}) if kids else None)")
        lines.append(f"{inner}{target} = {{{', '.join(parts)}}}")

    emit(shape, "rec", "        ", True)
    lines.append("        return rec")
    src = "\n".join([*head, *lines, "    return _build"])
    exec(compile(src, "<soql-shape>", "exec"), ns)  # generated from metadata only, see docstring
    fn: Callable[[str], Callable[[Row, dict[str, Any] | None], Any]] = ns["_make"]
    return fn


_TEXT_CONVS = (_datetime, _date, _time)


def _csv_cell(v: Any) -> Any:
    """A shaped value as a CSV cell: booleans as ``true``/``false``; None stays None (an empty field)."""
    if v.__class__ is bool:
        return "true" if v else "false"
    return v


def compile_cells(shape: ObjShape, columns: Sequence[str]) -> tuple[list[str], Callable[[Row], tuple[Any, ...]]] | None:
    """A generated function from a row straight to the CSV cells of ``columns`` (dotted paths, any casing), and the
    header in the record's casing; None when the shape needs records (TYPEOF, polymorphic parents, child
    subqueries) or a column is not a plain field path.

    Bulk query results are flat CSV, so building a nested record per row only to flatten it again costs most of
    the time of a query job. The cells equal what flattening ``compile_shape``'s record gives: a parent whose id is
    null leaves all its columns empty."""
    ns: dict[str, Any] = {"enc": encode_id, "cell": _csv_cell}
    found: dict[str, tuple[str, str]] = {}  # lower-cased dotted path -> (path in record casing, expression)
    counter = [0]

    def const(value: Any) -> str:
        counter[0] += 1
        ns[f"k{counter[0]}"] = value
        return f"k{counter[0]}"

    def walk(sh: ObjShape, prefix: str, guards: tuple[str, ...]) -> bool:
        get = sh.id_get
        if sh.typeof or sh.type_idx is not None or not isinstance(get, IdGet) or get.prefix is None:
            return False
        guards = (*guards, f"row[{get.idx}] is not None") if prefix else guards
        for kind, key, payload in sh.entries:
            if kind == "v" and isinstance(payload, ValueGet):
                v = f"row[{payload.idx}]"
                conv = payload.conv
                if conv is _plain:
                    expr = v
                elif conv is _bool:
                    expr = f"(None if {v} is None else 'true' if {v} else 'false')"
                elif conv in _TEXT_CONVS or getattr(conv, "__name__", "") in ("conv", "conv_int"):
                    expr = f"{const(conv)}({v})"  # never a boolean
                else:
                    expr = f"cell({const(conv)}({v}))"
            elif kind == "v":
                expr = f"cell({const(payload)}(row))"
            elif kind == "i":
                expr = f"(None if row[{get.idx}] is None else enc({get.prefix!r}, row[{get.idx}]))"
            elif kind == "p":
                if not walk(payload, f"{prefix}{key}.", guards):
                    return False
                continue
            else:
                return False
            if guards:
                expr = f"({expr} if {' and '.join(guards)} else None)"
            found[f"{prefix}{key}".lower()] = (f"{prefix}{key}", expr)
        return True

    if not walk(shape, "", ()):
        return None
    picked = [found.get(c.lower()) for c in columns]
    if not picked or any(p is None for p in picked):
        return None
    header = [p[0] for p in picked if p is not None]
    exprs = [p[1] for p in picked if p is not None]
    src = f"def _cells(row):\n    return ({', '.join(exprs)},)\n"
    exec(compile(src, "<soql-cells>", "exec"), ns)  # generated from metadata only, as in compile_shape
    fn: Callable[[Row], tuple[Any, ...]] = ns["_cells"]
    return header, fn
