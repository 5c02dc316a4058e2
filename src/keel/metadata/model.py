"""Frozen definitions of objects and fields, and the immutable schema snapshot every compiler reads.

A snapshot is built once per schema version and shared by every request. Lookups by API name are
case-insensitive, as in Salesforce. Physical names (``o_<id>``, ``f_<id>``) derive from stable ids, so a rename
touches metadata only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from keel.errors import InvalidFieldError, InvalidTypeError

SHARING_MODELS = ("private", "public_read", "public_read_write", "controlled_by_parent")


@dataclass(frozen=True, slots=True)
class PicklistValue:
    value: str
    label: str
    active: bool = True
    default: bool = False
    valid_for: tuple[str, ...] = ()  # controlling values, for dependent picklists


@dataclass(frozen=True, slots=True)
class ValidationRule:
    """A formula that is TRUE when the record is invalid."""

    name: str
    condition: str
    message: str
    field: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One field. ``column`` is its physical column, or None for fields computed at query time (formulas)."""

    api_name: str
    type: str
    label: str
    column: str | None = None
    id: int = 0
    standard: bool = False
    required: bool = False
    unique: bool = False
    external_id: bool = False
    indexed: bool = False
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    values: tuple[PicklistValue, ...] = ()
    restricted: bool = False
    controlling_field: str | None = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    child_relationship_name: str | None = None
    on_delete: str = "set_null"  # set_null | restrict | cascade (master-detail)
    default: Any = None  # a literal, or {"formula": "..."}
    formula: str | None = None
    returns: str | None = None
    blank_as: str = "zero"
    rollup: Mapping[str, Any] | None = None  # {"function", "child", "field", "filter"}
    display_format: str | None = None  # auto-number format such as "POS-{0000}"
    parts: tuple[str, ...] = ()  # composite name: the fields joined to make it
    track_history: bool = False
    sensitive: bool = False
    help_text: str | None = None
    description: str | None = None
    renamed_from: str | None = None

    @property
    def key(self) -> str:
        return self.api_name.lower()

    @property
    def custom(self) -> bool:
        return self.api_name.endswith("__c")

    @property
    def is_reference(self) -> bool:
        return self.type in ("lookup", "master_detail") or (self.type == "id")

    @property
    def is_relationship(self) -> bool:
        return self.type in ("lookup", "master_detail")

    @property
    def system_managed(self) -> bool:
        """Fields no caller may set: ids, audit fields, formulas, roll-ups, auto-numbers, composite names."""
        return self.type in ("id", "formula", "rollup", "auto_number", "composite") or (
            self.standard and self.api_name not in WRITABLE_STANDARD
        )

    def picklist_value(self, value: str) -> PicklistValue | None:
        low = value.lower()
        return next((v for v in self.values if v.value.lower() == low), None)


# Standard fields a caller may write (OwnerId transfers a record, Name is the record's name, RecordTypeId
# chooses among the object's record types).
WRITABLE_STANDARD = frozenset({"Name", "OwnerId", "RecordTypeId"})


@dataclass(frozen=True, slots=True)
class IndexDef:
    """A composite index on one object, like a Salesforce custom index: declared in YAML or derived from a list view.

    ``list`` indexes serve a filtered, sorted list page: equality filters, then the sort field, then ``Id`` (the
    keyset tiebreaker), so the first page is read in order from the index instead of sorting every match. ``report``
    indexes serve a GROUP BY: the grouping fields, then the fields the report filters on or aggregates, then the
    recycle-bin flag, so the whole aggregate is answered from the index (a covering index), never the table.
    The physical index is named after a hash of its key columns, so renaming a field changes nothing and changing
    the definition is a drop and a create.
    """

    fields: tuple[str, ...]
    kind: str = "list"  # list | report
    include: tuple[str, ...] = ()  # report: filtered and aggregated fields carried in the index
    source: str = "declared"  # declared | list_view:<name>


@dataclass(frozen=True, slots=True)
class ChildRelationship:
    """A lookup seen from its parent: ``(SELECT … FROM Contacts)`` on Account."""

    name: str
    child_object: str
    field: str
    cascade_delete: bool


@dataclass(frozen=True)
class ObjectDef:
    api_name: str
    label: str
    plural_label: str
    key_prefix: str = ""
    table: str = ""
    id: int = 0
    fields: tuple[FieldDef, ...] = ()
    sharing: str = "private"
    track_history: bool = False
    custom: bool = True
    role_hierarchy: bool = True
    validation_rules: tuple[ValidationRule, ...] = ()
    description: str | None = None
    renamed_from: str | None = None
    queryable: bool = True
    indexes: tuple[IndexDef, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # record types, layouts, search fields …
    source: str = field(default="", compare=False)  # the package file it came from, for plan-time errors; not stored

    @property
    def key(self) -> str:
        return self.api_name.lower()

    @cached_property
    def _by_key(self) -> dict[str, FieldDef]:
        return {f.key: f for f in self.fields}

    @cached_property
    def _by_relationship(self) -> dict[str, FieldDef]:
        return {f.relationship_name.lower(): f for f in self.fields if f.relationship_name}

    def find_field(self, name: str) -> FieldDef | None:
        return self._by_key.get(name.lower())

    def get_field(self, name: str) -> FieldDef:
        f = self._by_key.get(name.lower())
        if f is None:
            raise InvalidFieldError(f"No such column '{name}' on entity '{self.api_name}'.", fields=[name])
        return f

    def find_relationship(self, name: str) -> FieldDef | None:
        """The lookup field whose relationship name is ``name`` (``Account`` → ``AccountId``)."""
        return self._by_relationship.get(name.lower())

    @property
    def name_field(self) -> FieldDef:
        return self.get_field("Name")

    @cached_property
    def stored_fields(self) -> tuple[FieldDef, ...]:
        return tuple(f for f in self.fields if f.column)

    @cached_property
    def tracked_fields(self) -> tuple[FieldDef, ...]:
        if not self.track_history:
            return ()
        return tuple(f for f in self.fields if f.column and not f.standard and f.track_history)

    def with_fields(self, fields: tuple[FieldDef, ...]) -> ObjectDef:
        return replace(self, fields=fields)


@dataclass(frozen=True)
class SchemaSnapshot:
    """Every object of the organisation at one schema version. Immutable; share it freely."""

    version: int
    objects: tuple[ObjectDef, ...]

    @cached_property
    def _by_key(self) -> dict[str, ObjectDef]:
        return {o.key: o for o in self.objects}

    @cached_property
    def _by_prefix(self) -> dict[str, ObjectDef]:
        return {o.key_prefix: o for o in self.objects if o.key_prefix}

    @cached_property
    def _children(self) -> dict[str, tuple[ChildRelationship, ...]]:
        out: dict[str, list[ChildRelationship]] = {}
        for o in self.objects:
            for f in o.fields:
                if not f.is_relationship or not f.child_relationship_name:
                    continue
                for target in f.reference_to:
                    out.setdefault(target.lower(), []).append(
                        ChildRelationship(f.child_relationship_name, o.api_name, f.api_name, f.type == "master_detail")
                    )
        return {k: tuple(v) for k, v in out.items()}

    def __iter__(self) -> Iterator[ObjectDef]:
        return iter(self.objects)

    def find_object(self, name: str) -> ObjectDef | None:
        return self._by_key.get(name.lower())

    def get_object(self, name: str) -> ObjectDef:
        o = self._by_key.get(name.lower())
        if o is None:
            raise InvalidTypeError(f"sObject type '{name}' is not supported.")
        return o

    def find_by_prefix(self, prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(prefix)

    def child_relationships(self, obj: ObjectDef | str) -> tuple[ChildRelationship, ...]:
        key = obj.lower() if isinstance(obj, str) else obj.key
        return self._children.get(key, ())

    def find_child_relationship(self, obj: ObjectDef, name: str) -> ChildRelationship | None:
        low = name.lower()
        return next((c for c in self.child_relationships(obj) if c.name.lower() == low), None)

    @cached_property
    def cache(self) -> dict[str, Any]:
        """Per-snapshot memo for derived artefacts (SQLAlchemy tables, compiled coercers, query plans)."""
        return {}
