"""Composite indexes: declared on an object (``indexes:`` in YAML) or derived from its list views.

A list filtered on one field and sorted by another cannot use two single-column indexes at once: the database
either reads every match and sorts it, or walks the sort index and skips non-matches. Over a million rows either
costs hundreds of milliseconds. An index on (filter, sort, id) returns the first page in order, and the keyset
"next page" is a range scan of the same index. Likewise a GROUP BY over a table reads every row; a covering index
on the grouped and aggregated columns is a fraction of the table's size and already in group order.

Indexes are definitions in metadata, so ``plan`` shows each one created or dropped and ``apply`` builds them in the
same transaction as the rest of the change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from keel.errors import MetadataError
from keel.metadata.model import FieldDef, IndexDef, ObjectDef
from keel.metadata.types import TYPES
from keel.storage.ddl import IndexSpec

KINDS = ("list", "report")
MAX_KEYS = 8
# Long text is too wide for an index key and cannot be sorted or grouped in SOQL anyway.
UNINDEXABLE = ("longtext", "textarea", "multipicklist")
_KEYS = frozenset({"fields", "group_by", "include"})


def parse_indexes(raw: Any, where: str) -> tuple[IndexDef, ...]:
    """The ``indexes:`` list of an object file. ``fields`` makes a list index, ``group_by`` a report index."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise MetadataError(f"{where}: 'indexes' must be a list")
    out: list[IndexDef] = []
    for i, item in enumerate(raw):
        at = f"{where}, index #{i + 1}"
        if not isinstance(item, Mapping):
            raise MetadataError(f"{at}: expected a mapping with 'fields' or 'group_by'")
        unknown = set(item) - _KEYS
        if unknown:
            raise MetadataError(f"{at}: unknown key(s) {sorted(unknown)}")
        if ("fields" in item) == ("group_by" in item):
            raise MetadataError(f"{at}: give either 'fields' (a list index) or 'group_by' (a report index)")
        kind = "list" if "fields" in item else "report"
        keys = _names(item.get("fields") or item.get("group_by"), at, "fields" if kind == "list" else "group_by")
        include = _names(item.get("include") or [], at, "include", empty_ok=True)
        if kind == "list" and include:
            raise MetadataError(f"{at}: 'include' belongs to report indexes (group_by)")
        if not keys or len(keys) + len(include) > MAX_KEYS:
            raise MetadataError(f"{at}: an index has between 1 and {MAX_KEYS} fields")
        out.append(IndexDef(keys, kind, include))
    return tuple(out)


def _names(raw: Any, at: str, key: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw) or (not raw and not empty_ok):
        raise MetadataError(f"{at}: '{key}' must be a list of field API names")
    return tuple(raw)


def check_indexes(obj: ObjectDef, where: str) -> None:
    """Declared indexes name stored fields of the object: an error now beats a missing index in production."""
    for ix in obj.indexes:
        if ix.source != "declared":
            continue  # a derived index whose field went away is simply not built
        for name in (*ix.fields, *ix.include):
            f = obj.find_field(name)
            if f is None:
                raise MetadataError(f"{where}: index on {list(ix.fields)} names unknown field {name!r}")
            problem = _unindexable(f)
            if problem:
                raise MetadataError(f"{where}: index on {list(ix.fields)}: field {f.api_name!r} {problem}")


def _unindexable(f: FieldDef) -> str | None:
    if f.column is None:  # before a plan places it, a stored field's column is "" (still not None)
        return "is computed (a formula), not stored; index the fields it reads"
    if f.type in UNINDEXABLE:
        return f"is {f.type}, which cannot be indexed"
    return None


def derive_list_view_indexes(obj: ObjectDef) -> tuple[IndexDef, ...]:
    """One list index per package list view: its equality filters on the object's own stored fields, then its sort
    field. Parent paths, ranges and formulas are left out, as an index cannot serve them in that position."""
    out: list[IndexDef] = []
    for view in obj.extra.get("list_views") or []:
        if not isinstance(view, Mapping):
            continue
        keys: list[str] = []
        for flt in view.get("filters") or []:
            if not isinstance(flt, Mapping) or str(flt.get("op", "=")) != "=":
                continue
            f = obj.find_field(str(flt.get("field", "")))
            if f is not None and not _unindexable(f) and f.api_name not in keys:
                keys.append(f.api_name)
        sort = obj.find_field(str(view.get("sort") or "Name").split()[0])
        if sort is not None and not _unindexable(sort) and sort.api_name not in keys:
            keys.append(sort.api_name)
        if keys:
            out.append(IndexDef(tuple(keys), "list", (), f"list_view:{view.get('name', '')}"))
    return tuple(out)


def composite_specs(obj: ObjectDef, base: Sequence[IndexSpec]) -> list[IndexSpec]:
    """The physical indexes of ``obj.indexes``, without those another index already serves.

    A list index is served by another list index whose keys begin with its keys (the ``id`` tiebreaker aside: SQLite
    keeps the rowid in every index anyway), and by the primary key when it is just ``id``. A field's own index
    (``indexed: true``, the name index …) serves it on SQLite only: on PostgreSQL it is built NULLS LAST, which
    cannot give SOQL's ``ASC NULLS FIRST`` order, so there the list index is still built.
    """
    specs: dict[str, tuple[IndexDef, IndexSpec]] = {}
    for ix in obj.indexes:
        spec = _spec(obj, ix)
        if spec is not None:
            specs.setdefault(spec.name, (ix, spec))
    fields_own = [s.keys() for s in base if not s.live_only and not s.where]
    lists = [s.keys() for ix, s in specs.values() if ix.kind == "list"]
    out: list[IndexSpec] = []
    for ix, spec in specs.values():
        if ix.kind == "list":
            keys = spec.keys()
            core = keys[:-1]
            if not core or any(k != keys and k[:len(core)] == core for k in lists):
                continue
            if any(k[:len(core)] == core for k in fields_own):
                spec = replace(spec, dialects=("postgresql",))
        out.append(spec)
    return out


def _spec(obj: ObjectDef, ix: IndexDef) -> IndexSpec | None:
    fields = [obj.find_field(n) for n in (*ix.fields, *ix.include)]
    if any(f is None or _unindexable(f) for f in fields):
        return None  # a derived index whose field went away; declared ones are refused by check_indexes first
    cols = [f.column for f in fields if f is not None and f.column]
    keys, include = cols[:len(ix.fields)], cols[len(ix.fields):]
    if ix.kind == "list":
        # SOQL compares and sorts text as lower(column), so text keys are indexed that way.
        lowered = tuple(f.column for f in fields if f is not None and f.column and TYPES[f.type].storage == "text")
        spec = IndexSpec("", tuple(dict.fromkeys((*keys, "id"))), lower_columns=lowered, nulls_first=True)
    else:
        # Raw columns: GROUP BY uses them as stored, and a filter's lower(column) is computed from the index entry.
        # Under private sharing the record predicate reads the owner and the shared flag: with them in the index
        # a user's report stays an index-only scan, not a table lookup per row.
        shared = ("owner_id", "is_shared") if obj.sharing in ("private", "public_read") else ()
        rest = tuple(dict.fromkeys(c for c in (*include, "is_deleted", *shared, "id") if c not in keys))
        spec = IndexSpec("", tuple(keys), include=rest)
    digest = hashlib.sha1(("|".join((ix.kind, *spec.keys()))).encode()).hexdigest()[:10]
    return IndexSpec(f"cx_{obj.table}_{digest}", spec.columns, include=spec.include,
                     lower_columns=spec.lower_columns, nulls_first=spec.nulls_first)


def describe(spec: IndexSpec) -> str:
    only = f" [{', '.join(spec.dialects)} only]" if spec.dialects else ""
    part = f" WHERE {spec.where}" if spec.where else ""
    return f"{spec.name} ({', '.join(spec.keys())}){part}{only}"


def with_derived(obj: ObjectDef, declared: tuple[IndexDef, ...]) -> tuple[IndexDef, ...]:
    """Declared indexes first, then those derived from list views, without repeats."""
    out: dict[tuple[str, tuple[str, ...], tuple[str, ...]], IndexDef] = {}
    for ix in (*declared, *derive_list_view_indexes(obj)):
        key = (ix.kind, tuple(n.lower() for n in ix.fields), tuple(n.lower() for n in ix.include))
        out.setdefault(key, ix)
    return tuple(out.values())
