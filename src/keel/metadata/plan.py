"""Plan: a pure diff of the current snapshot and a desired set of objects into a list of operations.

The plan already carries every new id, key prefix and physical name, and the snapshot that will result, so
``apply`` only executes it. Checks that need the data (would this lose values?) are ``apply``'s, and
``keel plan`` runs them too, so an administrator sees the row counts before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from keel.errors import MetadataError
from keel.metadata.indexes import check_indexes, describe
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.package import check_cross_references
from keel.metadata.tables import index_specs
from keel.metadata.types import effective_type
from keel.storage.ddl import IndexSpec
from keel.storage.ids import ALPHABET

# Type changes that keep every value as it is; anything else is refused.
_COMPATIBLE = {
    frozenset({"text", "textarea"}), frozenset({"text", "longtext"}), frozenset({"textarea", "longtext"}),
    frozenset({"text", "email"}), frozenset({"text", "phone"}), frozenset({"text", "url"}),
    frozenset({"picklist", "text"}), frozenset({"number", "currency"}), frozenset({"number", "percent"}),
    frozenset({"currency", "percent"}), frozenset({"lookup", "master_detail"}),
}


@dataclass(frozen=True, slots=True)
class Op:
    kind: str  # create_object | update_object | rename_object | delete_object | add_field | update_field
    #            | rename_field | delete_field | create_index | drop_index
    object: str
    field: str | None = None
    detail: str = ""
    before: FieldDef | ObjectDef | IndexSpec | None = None
    after: FieldDef | ObjectDef | IndexSpec | None = None

    def describe(self) -> str:
        target = f"{self.object}.{self.field}" if self.field else self.object
        return f"{self.kind:<14} {target}" + (f"  ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Plan:
    before: SchemaSnapshot
    after: SchemaSnapshot
    ops: tuple[Op, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.ops


def next_key_prefix(used: set[str]) -> str:
    """Custom objects get ``a00``, ``a01`` … in base-62 order, skipping prefixes already taken."""
    for i in range(62 * 62):
        candidate = "a" + ALPHABET[i // 62] + ALPHABET[i % 62]
        if candidate not in used:
            return candidate
    raise MetadataError("no key prefixes left for custom objects")


def plan(before: SchemaSnapshot, desired: Sequence[ObjectDef], *, delete: Sequence[str] = ()) -> Plan:
    """Diff ``before`` against ``desired`` (objects not mentioned are left alone; ``delete`` names objects to drop)."""
    ops: list[Op] = []
    next_object = max((o.id for o in before), default=0) + 1
    next_field = max((f.id for o in before for f in o.fields), default=0) + 1
    used_prefixes = {o.key_prefix for o in before}
    result: dict[str, ObjectDef] = {o.key: o for o in before}
    desired = _with_rollup_types(before, desired)

    for name in delete:
        old = before.find_object(name)
        if old is None:
            raise MetadataError(f"cannot delete object {name!r}: it does not exist")
        if not old.custom:
            raise MetadataError(f"cannot delete standard object {old.api_name!r}")
        ops.append(Op("delete_object", old.api_name, before=old))
        del result[old.key]

    seen: set[str] = set()
    for want in desired:
        if want.key in seen:
            raise MetadataError(f"object {want.api_name!r} is defined twice")
        seen.add(want.key)
        old = before.find_object(want.api_name)
        if old is None and want.renamed_from:
            old = before.find_object(want.renamed_from)
            if old is not None:
                ops.append(Op("rename_object", want.api_name, detail=f"from {old.api_name}", before=old))
                del result[old.key]
        if old is None:
            prefix = want.key_prefix or next_key_prefix(used_prefixes)
            if prefix in used_prefixes:
                raise MetadataError(f"object {want.api_name!r}: key prefix {prefix} is already used")
            used_prefixes.add(prefix)
            oid = next_object
            next_object += 1
            fields = []
            for f in want.fields:
                fid = next_field
                next_field += 1
                fields.append(_place(f, fid))
            new = replace(want, id=oid, key_prefix=prefix, table=f"o_{oid}", fields=tuple(fields), renamed_from=None)
            check_indexes(new, f"object {new.api_name!r}")
            ops.append(Op("create_object", new.api_name, detail=f"{len(fields)} fields, prefix {prefix}", after=new))
            ops.extend(_index_ops(None, new))
            result[new.key] = new
            continue
        fields_after: list[FieldDef] = []
        old_by_key = {f.key: f for f in old.fields}
        matched: set[str] = set()
        for f in want.fields:
            prior = old_by_key.get(f.key)
            if prior is None and f.renamed_from:
                prior = old_by_key.get(f.renamed_from.lower())
                if prior is not None:
                    ops.append(Op("rename_field", want.api_name, f.api_name, f"from {prior.api_name}", prior))
            if prior is None:
                fid = next_field
                next_field += 1
                placed = _place(f, fid)
                ops.append(Op("add_field", want.api_name, f.api_name, f.type, after=placed))
                fields_after.append(placed)
                continue
            matched.add(prior.key)
            merged = replace(f, id=prior.id, column=prior.column, renamed_from=None)
            changes = _field_changes(want.api_name, prior, merged)
            if changes:
                ops.append(Op("update_field", want.api_name, f.api_name, changes, prior, merged))
            fields_after.append(merged)
        for prior in old.fields:
            if prior.key not in matched:
                if prior.standard:
                    fields_after.append(prior)
                    continue
                ops.append(Op("delete_field", old.api_name, prior.api_name, before=prior))
        new = replace(want, id=old.id, key_prefix=old.key_prefix, table=old.table, fields=tuple(fields_after),
                      renamed_from=None)
        check_indexes(new, f"object {new.api_name!r}")
        obj_changes = _object_changes(old, new)
        if obj_changes:
            ops.append(Op("update_object", new.api_name, detail=obj_changes, before=old, after=new))
        ops.extend(_index_ops(old, new))
        result[new.key] = new

    ordered = list(result.values())
    check_cross_references(ordered)
    after = SchemaSnapshot(version=before.version + (1 if ops else 0), objects=tuple(ordered))
    return Plan(before=before, after=after, ops=tuple(ops))


def _with_rollup_types(before: SchemaSnapshot, desired: Sequence[ObjectDef]) -> list[ObjectDef]:
    """MIN and MAX of a date or datetime child field are a date or datetime, and need a column of that type. The
    column is built from the field alone, so the type is written on the roll-up (``returns``) here, where the child
    is known; number roll-ups carry none and stay as they were."""
    pool = {o.key: o for o in before}
    pool.update({o.key: o for o in desired})
    view = SchemaSnapshot(0, tuple(pool.values()))
    out = []
    for obj in desired:
        fields = tuple(_typed_rollup(f, obj, view) if f.type == "rollup" else f for f in obj.fields)
        out.append(obj if fields == obj.fields else replace(obj, fields=fields))
    return out


def _typed_rollup(f: FieldDef, parent: ObjectDef, view: SchemaSnapshot) -> FieldDef:
    spec = {k: v for k, v in (f.rollup or {}).items() if k != "returns"}
    if str(spec.get("function", "")).upper() in ("MIN", "MAX") and spec.get("field"):
        want = str(spec.get("child", "")).lower()
        rel = next((c for c in view.child_relationships(parent)
                    if want in (c.name.lower(), c.child_object.lower())), None)
        child = view.find_object(rel.child_object) if rel else None
        value = child.find_field(str(spec["field"])) if child else None
        if value is not None and effective_type(value) in ("date", "datetime"):
            spec["returns"] = effective_type(value)
    return f if spec == dict(f.rollup or {}) else replace(f, rollup=spec)


def _index_ops(old: ObjectDef | None, new: ObjectDef) -> list[Op]:
    """Indexes to drop and create so the table has exactly ``index_specs(new)``. A new object's table is created
    with its indexes, so only its composite ones are listed (as ``create_index``, for review)."""
    want = {s.name: s for s in index_specs(new)}
    if old is None:
        have = {n: s for n, s in want.items() if not n.startswith("cx_")}
    else:
        have = {s.name: s for s in index_specs(old)}
    ops = [Op("drop_index", new.api_name, detail=describe(s), before=s)
           for n, s in have.items() if want.get(n) != s]
    ops += [Op("create_index", new.api_name, detail=describe(s), after=s)
            for n, s in want.items() if have.get(n) != s]
    return ops


def _place(f: FieldDef, fid: int) -> FieldDef:
    """Give a new field its id and physical column (formulas have none)."""
    if f.standard:
        return replace(f, id=fid, renamed_from=None)
    return replace(f, id=fid, column=None if f.column is None else f"f_{fid}", renamed_from=None)


def _field_changes(obj: str, old: FieldDef, new: FieldDef) -> str:
    at = f"object {obj!r}, field {new.api_name!r}"
    if old.type != new.type and frozenset({old.type, new.type}) not in _COMPATIBLE:
        raise MetadataError(f"{at}: changing the type from {old.type} to {new.type} is not supported")
    if (old.column is None) != (new.column is None):
        raise MetadataError(f"{at}: cannot turn a stored field into a formula or back; add a new field instead")
    changes = []
    for attr in ("type", "label", "length", "precision", "scale", "required", "unique", "external_id", "indexed",
                 "restricted", "reference_to", "on_delete", "default", "formula", "returns", "blank_as", "rollup",
                 "display_format", "track_history", "sensitive", "help_text", "description",
                 "relationship_name", "child_relationship_name", "controlling_field", "parts"):
        if getattr(old, attr) != getattr(new, attr):
            changes.append(f"{attr}: {getattr(old, attr)!r} -> {getattr(new, attr)!r}")
    if old.values != new.values:
        changes.append(_picklist_changes(old, new))
    if old.reference_to != new.reference_to:
        raise MetadataError(f"{at}: a lookup cannot be pointed at another object; add a new field instead")
    return "; ".join(changes)


def _picklist_changes(old: FieldDef, new: FieldDef) -> str:
    """Every kind of picklist edit by name, so a reviewer sees a relabel or a deactivation, not just "changed"."""
    added = [v.value for v in new.values if old.picklist_value(v.value) is None]
    removed = [v.value for v in old.values if new.picklist_value(v.value) is None]
    kept = [(o, n) for o in old.values if (n := new.picklist_value(o.value)) is not None]
    defaults = ([v.value for v in old.values if v.default], [v.value for v in new.values if v.default])
    order = ([o.value for o, _ in kept], [v.value for v in new.values if old.picklist_value(v.value) is not None])
    parts = [f"+{added} -{removed}"] if added or removed else []
    for what, names in (
        ("relabelled", [f"{o.value}: {o.label!r} -> {n.label!r}" for o, n in kept if o.label != n.label]),
        ("deactivated", [o.value for o, n in kept if o.active and not n.active]),
        ("reactivated", [o.value for o, n in kept if not o.active and n.active]),
        ("default", defaults[1] if defaults[0] != defaults[1] else []),
        ("dependencies", [o.value for o, n in kept if o.valid_for != n.valid_for]),
        ("reordered", order[1] if order[0] != order[1] else []),
    ):
        if names:
            parts.append(f"{what} {'; '.join(names)}")
    return "picklist values " + (", ".join(parts) or "changed")


def _object_changes(old: ObjectDef, new: ObjectDef) -> str:
    changes = []
    for attr in ("label", "plural_label", "sharing", "track_history", "role_hierarchy", "validation_rules",
                 "description", "indexes", "extra"):
        if getattr(old, attr) != getattr(new, attr):
            changes.append(attr)
    return ", ".join(changes)
