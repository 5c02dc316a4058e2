"""The field type registry: one entry per type, saying which options it takes, how it is stored, how it is
described to Salesforce clients, and how input values are coerced.

Formula and roll-up fields plug in here like any other type, so a new type is one entry, not a change to every
layer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from keel.metadata import values as V
from keel.metadata.model import FieldDef

Coercer = Callable[[Any], Any]


class FieldValueError(ValueError):
    """A value a field cannot take; the lifecycle turns it into a per-row error with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldType:
    name: str
    sf_type: str  # Salesforce describe type
    soap_type: str
    storage: str  # text | number | boolean | date | datetime | time | reference | none
    options: frozenset[str] = frozenset()
    default_length: int | None = None
    max_length: int | None = None
    filterable: bool = True
    sortable: bool = True
    groupable: bool = True


_TEXT_OPTS = frozenset({"length"})
_NUM_OPTS = frozenset({"precision", "scale"})
_PICK_OPTS = frozenset({"values", "restricted", "controlling_field"})
_REF_OPTS = frozenset({"to", "relationship_name", "child_relationship_name", "on_delete"})

TYPES: dict[str, FieldType] = {
    t.name: t
    for t in (
        FieldType("id", "id", "tns:ID", "reference"),
        FieldType("text", "string", "xsd:string", "text", _TEXT_OPTS, 255, 255),
        FieldType("textarea", "textarea", "xsd:string", "text", _TEXT_OPTS, 255, 255, False, False, False),
        FieldType("longtext", "textarea", "xsd:string", "text", _TEXT_OPTS, 32768, 131072, False, False, False),
        FieldType("email", "email", "xsd:string", "text", frozenset(), 80, 80),
        FieldType("phone", "phone", "xsd:string", "text", frozenset(), 40, 40),
        FieldType("url", "url", "xsd:string", "text", frozenset(), 255, 255),
        FieldType("number", "double", "xsd:double", "number", _NUM_OPTS),
        FieldType("currency", "currency", "xsd:double", "number", _NUM_OPTS),
        FieldType("percent", "percent", "xsd:double", "number", _NUM_OPTS),
        FieldType("checkbox", "boolean", "xsd:boolean", "boolean"),
        FieldType("date", "date", "xsd:date", "date"),
        FieldType("datetime", "datetime", "xsd:dateTime", "datetime"),
        FieldType("time", "time", "xsd:time", "time"),
        FieldType("picklist", "picklist", "xsd:string", "text", _PICK_OPTS, 255, 255),
        FieldType("multipicklist", "multipicklist", "xsd:string", "text", _PICK_OPTS, 4099, 4099, True, False, False),
        FieldType("lookup", "reference", "tns:ID", "reference", _REF_OPTS),
        FieldType("master_detail", "reference", "tns:ID", "reference", _REF_OPTS),
        FieldType("auto_number", "string", "xsd:string", "text", frozenset({"format"}), 30, 30),
        FieldType("composite", "string", "xsd:string", "text", frozenset({"parts"}), 121, 255),
        FieldType("formula", "string", "xsd:string", "none", frozenset({"returns", "formula", "scale", "blank_as"})),
        FieldType("rollup", "double", "xsd:double", "number", frozenset({"function", "child", "field", "filter"})),
    )
}

FORMULA_RETURNS = ("number", "currency", "percent", "text", "date", "datetime", "time", "checkbox")
DEFAULT_PRECISION = 18
DEFAULT_SCALE = {"number": 0, "currency": 2, "percent": 2}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def get_type(name: str) -> FieldType:
    return TYPES[name]


def effective_type(f: FieldDef) -> str:
    """The type a value of this field has: a formula's return type, a roll-up's number type."""
    if f.type == "formula":
        return f.returns or "text"
    if f.type == "rollup":
        return rollup_type(f)
    return f.type


def rollup_type(f: FieldDef) -> str:
    """COUNT is a number; SUM, MIN and MAX are currency, or a date or datetime when plan found MIN or MAX of one."""
    spec = f.rollup or {}
    if spec.get("returns"):
        return str(spec["returns"])
    return "number" if str(spec.get("function", "")).upper() == "COUNT" else "currency"


def storage_of(f: FieldDef) -> str:
    """How a field's value is stored: its type's storage, a roll-up's by the type of its value."""
    if f.type == "rollup":
        return TYPES[rollup_type(f)].storage
    return TYPES[f.type].storage


def sf_type(f: FieldDef) -> str:
    t = effective_type(f)
    if t == "formula":  # pragma: no cover - effective_type never returns formula
        return "string"
    return TYPES[t].sf_type if t in TYPES else "string"


# --- coercion -------------------------------------------------------------------------------------------------


def _text_limit(f: FieldDef) -> int:
    return f.length or TYPES[f.type].default_length or 255


def plain_text_limit(f: FieldDef) -> int | None:
    """The length limit when the field's coercer passes any non-empty string up to it through unchanged (so a
    generated coercer may inline that check), else None."""
    return _text_limit(f) if COERCERS.get(f.type) is _text else None


def _text(f: FieldDef) -> Coercer:
    limit = _text_limit(f)

    def coerce(v: Any) -> Any:
        if type(v) is str and 0 < len(v) <= limit:  # the common case, first
            return v
        if v is None:
            return None
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif not isinstance(v, str):
            if isinstance(v, int | float | Decimal):
                v = str(v)
            else:
                raise FieldValueError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type")
        if v == "":
            return None
        if len(v) > limit:
            raise FieldValueError(
                "STRING_TOO_LONG", f"{f.label}: data value too large: {v[:20]}… (max length={limit})"
            )
        return v

    return coerce


def _email(f: FieldDef) -> Coercer:
    base = _text(f)

    def coerce(v: Any) -> Any:
        s = base(v)
        if s is not None and not _EMAIL.match(s):
            raise FieldValueError("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {s}")
        return s

    return coerce


def _number(f: FieldDef) -> Coercer:
    precision = f.precision or DEFAULT_PRECISION
    scale = f.scale if f.scale is not None else DEFAULT_SCALE.get(f.type, 0)
    limit = Decimal(10) ** (precision - scale)
    quantum = Decimal(1).scaleb(-scale)

    low = -limit

    def coerce(v: Any) -> Any:
        if v is None or v == "":
            return None
        try:
            d = Decimal(v) if type(v) is str and v.isascii() and "," not in v else V.parse_decimal(v)
            inside = low < d < limit  # NaN raises here; one chained comparison is the cheapest range check
        except (ValueError, ArithmeticError):
            inside = False
            d = Decimal("NaN")
        if not inside:
            if not d.is_finite():
                raise FieldValueError(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type: {v}"
                ) from None
            raise FieldValueError("NUMBER_OUTSIDE_VALID_RANGE", f"{f.label}: number outside valid range: {v}")
        q = d.quantize(quantum, ROUND_HALF_UP)
        if not low < q < limit:  # rounding carried into another integer digit (9999.95 at scale 1)
            raise FieldValueError("NUMBER_OUTSIDE_VALID_RANGE", f"{f.label}: number outside valid range: {v}")
        return int(q) if scale == 0 else q

    return coerce


_BOOLEAN_SPELLINGS = {"true": True, "false": False, "True": True, "False": False, "1": True, "0": False}


def _checkbox(f: FieldDef) -> Coercer:
    def coerce(v: Any) -> Any:
        if type(v) is bool:
            return v
        if type(v) is str and (b := _BOOLEAN_SPELLINGS.get(v)) is not None:  # what clients send, no normalising
            return b
        if v is None:
            return False
        try:
            return V.parse_bool(v)
        except ValueError:
            raise FieldValueError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type: {v}"
            ) from None

    return coerce


def _parsed(f: FieldDef, parse: Callable[[str], Any], kinds: tuple[type, ...]) -> Coercer:
    def coerce(v: Any) -> Any:
        if v is None or v == "":
            return None
        if isinstance(v, kinds):
            return v
        if isinstance(v, str):
            try:
                return parse(v)
            except ValueError:
                pass
        raise FieldValueError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type: {v}")

    return coerce


def _datetime_value(f: FieldDef) -> Coercer:
    inner = _parsed(f, V.parse_datetime, (dt.datetime,))

    def coerce(v: Any) -> Any:
        if type(v) is str and len(v) > 10:  # parse_datetime already gives naive UTC
            try:
                return V.parse_datetime(v)
            except ValueError:
                pass
        out = inner(v)
        if isinstance(out, dt.datetime) and out.tzinfo is not None:
            out = out.astimezone(dt.UTC).replace(tzinfo=None)
        return out

    return coerce


def _picklist(f: FieldDef) -> Coercer:
    canon = {pv.value.lower(): pv.value for pv in f.values}
    canon.update({pv.value: pv.value for pv in f.values})
    text = _text(f)

    def coerce(v: Any) -> Any:
        c = canon.get(v) if type(v) is str else None  # exact canonical spelling: no further checks needed
        if c is not None:
            return c
        s = text(v)
        if s is None:
            return None
        c = canon.get(s.lower())
        if c is None and f.restricted:
            raise FieldValueError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", f"{f.label}: bad value for restricted picklist field: {s}"
            )
        return c or s

    return coerce


def _multipicklist(f: FieldDef) -> Coercer:
    order = {pv.value.lower(): (i, pv.value) for i, pv in enumerate(f.values)}

    def coerce(v: Any) -> Any:
        if v is None or v == "" or v == []:
            return None
        items = v if isinstance(v, list | tuple) else str(v).split(";")
        seen: dict[str, tuple[int, str]] = {}
        for raw in items:
            s = str(raw).strip()
            if not s:
                continue
            hit = order.get(s.lower())
            if hit is None:
                if f.restricted:
                    raise FieldValueError(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{f.label}: bad value for restricted picklist field: {s}",
                    )
                hit = (len(order) + len(seen), s)
            seen.setdefault(hit[1].lower(), hit)
        return ";".join(v for _, v in sorted(seen.values())) or None

    return coerce


COERCERS: dict[str, Callable[[FieldDef], Coercer]] = {
    "text": _text,
    "textarea": _text,
    "longtext": _text,
    "phone": _text,
    "url": _text,
    "email": _email,
    "number": _number,
    "currency": _number,
    "percent": _number,
    "checkbox": _checkbox,
    "date": lambda f: _parsed(f, V.parse_date, (dt.date,)),
    "datetime": _datetime_value,
    "time": lambda f: _parsed(f, V.parse_time, (dt.time,)),
    "picklist": _picklist,
    "multipicklist": _multipicklist,
}


def value_coercer(f: FieldDef) -> Coercer | None:
    """A coercer for plain value fields; None for references and system-managed types (handled by the lifecycle)."""
    factory = COERCERS.get(f.type)
    return factory(f) if factory else None


def option_summary(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())
