"""Physical tables for objects: SQLAlchemy ``Table``s built from ``ObjectDef``s, and the indexes they need."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from keel.metadata.indexes import composite_specs
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.types import TYPES, storage_of
from keel.storage import search
from keel.storage.ddl import IndexSpec

# Field types whose text a search matches (``FIND … IN ALL FIELDS``); the Name field is searched whatever its type.
SEARCHABLE_TYPES = frozenset({"text", "textarea", "longtext", "email", "phone", "url", "picklist", "multipicklist",
                              "auto_number", "composite"})

NAME_INCLUDE = ("owner_id", "is_shared")
# The owner's place in the role hierarchy, kept by ``security.lineage``: the depth of the owner's role and its
# ancestor (or itself) at depths 1..LINEAGE_DEPTHS. "Owned by someone below the role R at depth d" is then
# ``role_<d> = R AND role_depth > d``, and an index on (role_<d>, Name) lists those records in name order.
LINEAGE_DEPTHS = 4
LINEAGE_ROLES = tuple(f"role_{d}" for d in range(1, LINEAGE_DEPTHS + 1))
LINEAGE_COLUMNS = ("role_depth", *LINEAGE_ROLES)

_IDS = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid


def column_type(f: FieldDef) -> sa.types.TypeEngine[Any]:
    storage = storage_of(f)
    if f.type == "id":
        return _IDS
    if storage == "text":
        return sa.Text()
    if storage == "number":
        return sa.Numeric().with_variant(sa.Float(), "sqlite")
    if storage == "boolean":
        return sa.Boolean()
    if storage == "date":
        return sa.Date()
    if storage == "datetime":
        return sa.DateTime()
    if storage == "time":
        return sa.Time()
    if storage == "reference":
        return sa.BigInteger()
    raise ValueError(f"field {f.api_name} of type {f.type} has no column")


def is_polymorphic(f: FieldDef) -> bool:
    return f.is_relationship and len(f.reference_to) > 1


def type_column(f: FieldDef) -> str:
    """The companion column holding a polymorphic lookup's target key prefix."""
    assert f.column
    return f.column + "_t"


def field_columns(f: FieldDef) -> list[sa.Column[Any]]:
    if not f.column:
        return []
    if f.type == "id":
        return [sa.Column(f.column, _IDS, primary_key=True, autoincrement=False)]
    nullable = f.type != "checkbox"
    cols: list[sa.Column[Any]] = [
        sa.Column(f.column, column_type(f), nullable=nullable, server_default=sa.false() if not nullable else None)
    ]
    if is_polymorphic(f):
        cols.append(sa.Column(type_column(f), sa.String(3)))
    return cols


def build_table(obj: ObjectDef, metadata: sa.MetaData | None = None) -> sa.Table:
    cols: list[sa.Column[Any]] = []
    for f in obj.fields:
        cols.extend(field_columns(f))
    cols.append(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    # Derived, kept by ``security.reach``: the record has a row in keel_share. A list sorted by Name under private
    # sharing tests it from the Name index and probes the shares of only the records that have any.
    cols.append(sa.Column("is_shared", sa.Boolean, nullable=False, server_default=sa.false()))
    cols.append(sa.Column("role_depth", sa.SmallInteger))
    cols.extend(sa.Column(c, sa.BigInteger) for c in LINEAGE_ROLES)
    return sa.Table(obj.table, metadata or sa.MetaData(), *cols)


_BUILD_LOCK = threading.Lock()


def table_for(schema: SchemaSnapshot, obj: ObjectDef) -> sa.Table:
    """The cached ``Table`` of ``obj`` in this snapshot; all tables of a snapshot share one ``MetaData``."""
    cache = schema.cache
    md = cache.setdefault("sa_metadata", sa.MetaData())
    tables: dict[str, sa.Table] = cache.setdefault("sa_tables", {})
    t = tables.get(obj.key)
    if t is None:
        with _BUILD_LOCK:  # concurrent first requests on a cold server would define the Table twice
            t = tables.get(obj.key)
            if t is None:
                t = md.tables.get(obj.table)
                t = tables[obj.key] = t if t is not None else build_table(obj, md)
    return t


def index_specs(obj: ObjectDef) -> list[IndexSpec]:
    """Indexes every object gets (name, owner, lookups, unique/external ids and fields marked indexed), then its
    composite indexes (``metadata.indexes``)."""
    specs = [IndexSpec(f"ix_{obj.table}_modstamp", ("system_modstamp",))]
    for f in obj.fields:
        if not f.column or f.type == "id":
            continue
        text = TYPES[f.type].storage == "text"
        if f.unique or f.external_id:
            specs.append(IndexSpec(f"ux_{obj.table}_{f.column}", (f.column,), unique=f.unique, lower=text,
                                   live_only=f.unique))
            if text and not f.unique:
                continue
        if f.indexed or f.is_relationship or f.api_name == "Name":
            # SOQL compares and sorts text case-insensitively, so text is indexed on lower(column) only. The name
            # index carries the owner and the shared flag, so a list sorted by name under private sharing tests
            # visibility in the index. Not ``is_deleted``: every query filters on it, and SQLite would then walk
            # this index with a table lookup per row instead of scanning the table for unindexed filters.
            # Keys NULLS FIRST on PostgreSQL serve SOQL's default orders (ASC NULLS FIRST, DESC NULLS LAST), so
            # ``ORDER BY Name LIMIT 50`` reads 50 index entries instead of sorting the table.
            include = NAME_INCLUDE if f.api_name == "Name" else ()
            specs.append(IndexSpec(f"ix_{obj.table}_{f.column}", (f.column,), lower=text, include=include,
                                   nulls_first=True))
    specs += lineage_specs(obj)
    specs += composite_specs(obj, specs)
    found = search_fields(obj)
    if found:
        specs.append(IndexSpec(search.index_name(obj.table), tuple(f.column or "" for f in found), search=True))
    return specs


def lineage_specs(obj: ObjectDef) -> list[IndexSpec]:
    """Where records are private and managers see their subordinates' records, a list sorted by Name is a merge
    of two streams read in order: records below the manager's role, ``(role_<d>, Name)``, and shared records,
    Name over the rows with ``is_shared`` (``query/arms.py``). Each index is partial, so records owned above
    depth ``d`` (and the ~99% without shares) cost it nothing."""
    name = obj.find_field("Name")
    if name is None or not name.column or obj.sharing not in ("private", "public_read") or not obj.role_hierarchy:
        return []
    text = TYPES[name.type].storage == "text"
    lowered = (name.column,) if text else ()
    # The key ends with the id (the page's tiebreak) and carries what the test and the bound read, so neither
    # needs the table row: ``(role_<d>, Name, id) + (role_depth, owner_id, is_deleted)``.
    specs = [IndexSpec(f"ix_{obj.table}_{c}", (c, name.column, "id"), lower_columns=lowered, nulls_first=True,
                       include=("role_depth", "owner_id", "is_deleted"), where=f'"{c}" IS NOT NULL')
             for c in LINEAGE_ROLES]
    specs.append(IndexSpec(f"ix_{obj.table}_shared_name", (name.column, "id"), lower_columns=lowered,
                           nulls_first=True, where='"is_shared" = true'))
    return specs


def lineage_index_names(table: str) -> set[str]:
    """Every name ``lineage_specs`` may give an index of ``table``."""
    return {f"ix_{table}_{c}" for c in LINEAGE_ROLES} | {f"ix_{table}_shared_name"}


def search_fields(obj: ObjectDef) -> list[FieldDef]:
    """The stored fields of ``obj`` its full-text index covers: Name, then the others by field id. Only queryable
    objects with a Name are searchable, as in SOSL; deriving the list from the definition lets the metadata plan
    drop and rebuild the index whenever a text field is added or removed. The order is by id, not by the object's
    field order, which differs when two apps extend one object (an app's plan lists its own fields where the
    stored object has them elsewhere) and would make the plan rebuild an unchanged index."""
    if not obj.queryable or obj.find_field("Name") is None:
        return []
    found = [f for f in obj.fields if f.column and (f.type in SEARCHABLE_TYPES or f.api_name == "Name")]
    return sorted(found, key=lambda f: (f.api_name != "Name", f.id))
