"""Formula value types and the typed tree the type checker produces; both back ends compile this tree.

Types are the formula language's, not storage's: every text-like field is ``text``, a checkbox is ``boolean``,
lookups are ``id``. Picklists keep their own types because Salesforce only lets them be read through ``ISPICKVAL``,
``CASE``, ``TEXT`` and ``INCLUDES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from keel.metadata.model import FieldDef, SchemaSnapshot
from keel.metadata.types import effective_type

if TYPE_CHECKING:
    from keel.formula.fn import Fn

TEXT = "text"
NUMBER = "number"
CURRENCY = "currency"
PERCENT = "percent"
BOOLEAN = "boolean"
DATE = "date"
DATETIME = "datetime"
TIME = "time"
PICKLIST = "picklist"
MULTIPICKLIST = "multipicklist"
ID = "id"
NULL = "null"  # the type of the NULL literal: fits anywhere

NUMERIC = frozenset({NUMBER, CURRENCY, PERCENT})
VALUE_TYPES = (TEXT, NUMBER, CURRENCY, PERCENT, BOOLEAN, DATE, DATETIME, TIME)

_FIELD_TYPES = {
    "text": TEXT, "textarea": TEXT, "longtext": TEXT, "email": TEXT, "phone": TEXT, "url": TEXT,
    "auto_number": TEXT, "composite": TEXT, "number": NUMBER, "currency": CURRENCY, "percent": PERCENT,
    "checkbox": BOOLEAN, "date": DATE, "datetime": DATETIME, "time": TIME, "picklist": PICKLIST,
    "multipicklist": MULTIPICKLIST, "lookup": ID, "master_detail": ID, "id": ID,
}
RETURNS = {"checkbox": BOOLEAN, "number": NUMBER, "currency": CURRENCY, "percent": PERCENT, "text": TEXT,
           "date": DATE, "datetime": DATETIME, "time": TIME}


def field_type(f: FieldDef) -> str:
    """The formula type of a field's value (a formula field's return type, a roll-up's number type)."""
    return _FIELD_TYPES.get(effective_type(f), TEXT)


def memo(schema: SchemaSnapshot) -> dict[Any, Any]:
    """The formula package's share of the snapshot's cache (compiled trees and closures live as long as it)."""
    return cast(dict[Any, Any], schema.cache.setdefault("formula", {}))


def is_numeric(t: str) -> bool:
    return t in NUMERIC


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What ``check`` reports: the formula's type and whether it can be blank."""

    type: str
    nullable: bool

    def __str__(self) -> str:
        return self.type


@dataclass(frozen=True, slots=True)
class TNode:
    type: str
    nullable: bool
    pos: int


@dataclass(frozen=True, slots=True)
class TLit(TNode):
    value: Any


@dataclass(frozen=True, slots=True)
class TField(TNode):
    """A field of the record or of a parent reached through ``path`` (the lookup fields walked, in order).

    ``zero`` is True when a blank number reads as 0 (``blank_as: zero``). ``formula`` is the referenced formula
    field's own typed tree, inlined by both back ends.
    """

    path: tuple[FieldDef, ...]
    field: FieldDef
    zero: bool
    formula: TNode | None


@dataclass(frozen=True, slots=True)
class TGlobal(TNode):
    scope: str  # "User" | "Organization"
    field: FieldDef


@dataclass(frozen=True, slots=True)
class TCall(TNode):
    fn: Fn
    args: tuple[TNode, ...]


@dataclass(frozen=True, slots=True)
class Checked:
    """A type-checked formula: the typed tree plus what it depends on (formula fields, for cycle detection)."""

    text: str
    root: TNode
    depends_on: frozenset[tuple[str, str]]  # (object key, field key) of formula fields referenced
    uses_change_tracking: bool
    uses_globals: bool

    @property
    def info(self) -> TypeInfo:
        return TypeInfo(self.root.type, self.root.nullable)
