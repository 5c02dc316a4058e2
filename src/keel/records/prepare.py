"""Per-object write plans, built once per schema snapshot: coercers, encoders and the column order.

Everything that does not depend on the row is decided here, so the per-row loop in ``save`` only does per-row work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import is_polymorphic, type_column
from keel.metadata.types import Coercer, FieldValueError, plain_text_limit, value_coercer
from keel.records import fastpath
from keel.records.codec import Encoder, encoder, layout_kind, pg_copy_type
from keel.storage import ids
from keel.storage.ids import CanonicalId, parse

# A dependent picklist, its controlling field, and each restricted value's controlling values.
Dependent = tuple[FieldDef, FieldDef, dict[str, frozenset[str]]]

AUDIT_COLUMNS = ("created_date", "created_by_id", "last_modified_date", "last_modified_by_id", "system_modstamp")


@dataclass(frozen=True)
class WritePlan:
    obj: ObjectDef
    by_key: dict[str, FieldDef]
    coercers: dict[str, Coercer]  # API name -> coercer (value fields and references)
    encoders: dict[str, Encoder]
    writable: tuple[FieldDef, ...]  # fields with a column a caller or the lifecycle fills (not audit/id)
    insert_columns: tuple[str, ...]
    required: tuple[FieldDef, ...]
    unique: tuple[FieldDef, ...]
    references: tuple[FieldDef, ...]
    defaults: tuple[tuple[str, Any], ...]  # literal defaults, already coerced
    formula_defaults: tuple[tuple[FieldDef, str], ...]
    auto_numbers: tuple[FieldDef, ...]
    composite: FieldDef | None
    build_row: fastpath.RowBuilder  # values -> insert tuple in ``insert_columns`` order
    copy_types: tuple[str, ...]  # PostgreSQL type of each insert column, for binary COPY
    # Generated draft coercers by the tuple of input keys they accept (see ``fastpath.draft_coercer``).
    draft_coercers: dict[tuple[str, ...], fastpath.DraftCoercer] = field(default_factory=dict)
    # Dependent picklists: (dependent field, controlling field, value -> controlling values it is valid for).
    # Values without ``valid_for`` are valid whatever the controller holds, as the form shows them.
    dependents: tuple[Dependent, ...] = ()

    def draft_coercer(self, slots: list[fastpath.Slot], owner: str) -> fastpath.DraftCoercer:
        """The generated coercer for new rows with these keys, defaults (and the owner) included."""
        key = (owner, *(s[0] for s in slots))
        fn = self.draft_coercers.get(key)
        if fn is None:
            if len(self.draft_coercers) >= 32:  # callers with ever-changing key sets: keep the cache bounded
                self.draft_coercers.clear()
            fn = self.draft_coercers[key] = fastpath.draft_coercer(slots, [*self.defaults, ("OwnerId", owner)])
        return fn

    def text_limit(self, api_name: str) -> int | None:
        f = self.by_key.get(api_name.lower())
        return None if f is None or f.is_relationship else plain_text_limit(f)


def write_plan(schema: SchemaSnapshot, obj: ObjectDef, dialect: str) -> WritePlan:
    key = f"write_plan:{obj.key}:{dialect}"
    cached = schema.cache.get(key)
    if cached is None:
        cached = schema.cache[key] = _build(schema, obj, dialect)
    assert isinstance(cached, WritePlan)
    return cached


def _build(schema: SchemaSnapshot, obj: ObjectDef, dialect: str) -> WritePlan:
    coercers: dict[str, Coercer] = {}
    encoders: dict[str, Encoder] = {}
    writable: list[FieldDef] = []
    columns: list[str] = ["id", *AUDIT_COLUMNS, "is_deleted", "version"]
    copy_types: list[str] = ["int8", "timestamp", "int8", "timestamp", "int8", "timestamp", "bool", "int4"]
    defaults: list[tuple[str, Any]] = []
    formula_defaults: list[tuple[FieldDef, str]] = []
    for f in obj.fields:
        if f.is_relationship:
            coercers[f.api_name] = reference_coercer(schema, f)
        else:
            c = value_coercer(f)
            if c is not None:
                coercers[f.api_name] = c
        if not f.column or f.type == "id" or f.column in AUDIT_COLUMNS or f.column == "is_deleted":
            continue
        writable.append(f)
        encoders[f.api_name] = encoder(f, dialect)
        columns.append(f.column)
        copy_types.append(pg_copy_type(f))
        if is_polymorphic(f):
            columns.append(type_column(f))
            copy_types.append("text")
        if isinstance(f.default, dict) and "formula" in f.default:
            formula_defaults.append((f, str(f.default["formula"])))
        elif f.default is not None and f.api_name in coercers:
            defaults.append((f.api_name, coercers[f.api_name](f.default)))
        elif f.type in ("picklist", "multipicklist"):
            d = next((v.value for v in f.values if v.default), None)
            if d is not None:
                defaults.append((f.api_name, d))
        elif f.type == "checkbox":
            defaults.append((f.api_name, False))
    name = obj.find_field("Name")
    computed = ("auto_number", "composite", "rollup", "checkbox")
    required = tuple(
        f for f in writable if f.type not in computed and (f.required or (f.api_name == "Name" and f.type == "text"))
    )
    return WritePlan(
        obj=obj,
        by_key={f.key: f for f in obj.fields},
        coercers=coercers,
        encoders=encoders,
        writable=tuple(writable),
        insert_columns=tuple(columns),
        required=required,
        unique=tuple(f for f in writable if f.unique),
        references=tuple(f for f in writable if f.is_relationship),
        defaults=tuple(defaults),
        formula_defaults=tuple(formula_defaults),
        auto_numbers=tuple(f for f in obj.fields if f.type == "auto_number" and f.column),
        composite=name if name is not None and name.type == "composite" else None,
        copy_types=tuple(copy_types),
        build_row=fastpath.row_builder([
            (f.api_name, layout_kind(f, dialect), _reference_kind(f), encoders[f.api_name]) for f in writable]),
        dependents=_dependents(obj, writable),
    )


def _dependents(obj: ObjectDef, writable: list[FieldDef]) -> tuple[Dependent, ...]:
    """Decided once per schema, so the per-batch check in ``validate`` is a dictionary look-up per row."""
    out: list[Dependent] = []
    for f in writable:
        ctl = obj.find_field(f.controlling_field) if f.controlling_field else None
        if ctl is None or f.type not in ("picklist", "multipicklist"):
            continue
        allowed = {pv.value: frozenset(pv.valid_for) for pv in f.values if pv.valid_for}
        if allowed:
            out.append((f, ctl, allowed))
    return tuple(out)


def _reference_kind(f: FieldDef) -> int:
    """For ``fastpath.row_builder``: 0 a value, 1 a lookup, 2 a polymorphic lookup, 3 the owner (user or queue)."""
    if not f.is_relationship:
        return 0
    if f.column == "owner_id":
        return 3
    return 2 if is_polymorphic(f) else 1


def reference_coercer(schema: SchemaSnapshot, f: FieldDef) -> Callable[[Any], Any]:
    """Accept a 15- or 18-character id of one of the field's target objects; return the 18-character form.

    OwnerId also takes a queue's Group id (Salesforce's queues own records); whether that queue may own this
    object's records is checked with the other references (``validate``)."""
    prefixes = {}
    for target in (*f.reference_to, *(("Group",) if f.column == "owner_id" else ())):
        t = schema.find_object(target)
        if t is not None:
            prefixes[t.key_prefix] = t

    def coerce(v: Any) -> Any:
        if v is None or v == "":
            return None
        if type(v) is CanonicalId and v[:3] in prefixes:
            return v
        if not isinstance(v, str):
            raise FieldValueError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {v}")
        try:
            prefix, n, exact = parse(v)
        except Exception:
            try:
                prefix, n, exact = parse(v.strip())
            except Exception:
                raise FieldValueError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {v}") from None
        if exact and prefix in prefixes:
            return CanonicalId(v)  # checked: the row builder takes its integer without checking it again
        if prefix not in prefixes:
            raise FieldValueError(
                "INVALID_CROSS_REFERENCE_KEY",
                f"{f.label}: id value of incorrect type: {v}; expected an id of {', '.join(f.reference_to)}",
            )
        return CanonicalId(ids.encode(prefix, n))

    return coerce


def format_auto_number(fmt: str, n: int) -> str:
    """``POS-{0000}`` with n=7 gives ``POS-0007``."""
    return re.sub(r"\{(0+)\}", lambda m: str(n).zfill(len(m.group(1))), fmt, count=1)
