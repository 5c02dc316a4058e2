"""Metadata packages: a directory of YAML files, one object per file, parsed into ``ObjectDef``s.

Every option is checked here, at plan time, so an error names the file, the object and the field before anything
touches the database. The standard audit fields are added to every object, so no package declares them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from keel.errors import MetadataError
from keel.metadata.indexes import check_indexes, parse_indexes, with_derived
from keel.metadata.model import SHARING_MODELS, FieldDef, ObjectDef, PicklistValue, ValidationRule
from keel.metadata.recordtypes import with_record_types
from keel.metadata.types import DEFAULT_PRECISION, FORMULA_RETURNS, TYPES, FieldValueError, value_coercer
from keel.yamlio import load_yaml

_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_COMMON_FIELD_KEYS = frozenset(
    {"name", "type", "label", "required", "unique", "external_id", "indexed", "default", "track_history",
     "sensitive", "help_text", "description", "renamed_from"}
)
_OBJECT_KEYS = frozenset(
    {"object", "label", "plural_label", "name_field", "sharing", "track_history", "fields", "key_prefix",
     "description", "renamed_from", "validation_rules", "role_hierarchy", "record_types", "layouts",
     "search_fields", "list_views", "compact_fields", "indexes"}
)
STANDARD_COLUMNS = ("id", "name", "owner_id", "created_date", "created_by_id", "last_modified_date",
                    "last_modified_by_id", "system_modstamp", "is_deleted", "version", "is_shared", "role_depth",
                    "role_1", "role_2", "role_3", "role_4")
# Every object carries these; ``Name`` comes from the object's ``name_field``.
AUDIT_FIELDS = (
    FieldDef("Id", "id", "Record ID", column="id", standard=True),
    FieldDef("OwnerId", "lookup", "Owner ID", column="owner_id", standard=True, reference_to=("User",),
             relationship_name="Owner", indexed=True),
    FieldDef("CreatedDate", "datetime", "Created Date", column="created_date", standard=True),
    FieldDef("CreatedById", "lookup", "Created By ID", column="created_by_id", standard=True,
             reference_to=("User",), relationship_name="CreatedBy"),
    FieldDef("LastModifiedDate", "datetime", "Last Modified Date", column="last_modified_date", standard=True),
    FieldDef("LastModifiedById", "lookup", "Last Modified By ID", column="last_modified_by_id", standard=True,
             reference_to=("User",), relationship_name="LastModifiedBy"),
    FieldDef("SystemModstamp", "datetime", "System Modstamp", column="system_modstamp", standard=True),
    FieldDef("IsDeleted", "checkbox", "Deleted", column="is_deleted", standard=True),
)


def load_package(path: str | Path, *, standard: bool = False) -> list[ObjectDef]:
    """Parse every ``*.yaml`` object file under ``path`` (or its ``objects/`` folder)."""
    root = Path(path)
    folder = root / "objects" if (root / "objects").is_dir() else root
    if not folder.is_dir():
        raise MetadataError(f"{root}: not a metadata package directory")
    files = sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    return [parse_object_file(p, standard=standard) for p in files]


def parse_object_file(path: Path, *, standard: bool = False) -> ObjectDef:
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MetadataError(f"{path.name}: invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise MetadataError(f"{path.name}: expected a mapping with an 'object' key")
    return parse_object(doc, source=path.name, standard=standard)


def parse_object(doc: Mapping[str, Any], *, source: str = "<metadata>", standard: bool = False) -> ObjectDef:
    """Turn one object document into an ``ObjectDef`` with no ids yet (the desired state)."""
    name = doc.get("object")
    where = f"{source}: object {name!r}"
    if not isinstance(name, str) or not _API_NAME.match(name) or "__" in name.removesuffix("__c"):
        raise MetadataError(f"{where}: 'object' must be an API name such as Position__c")
    custom = name.endswith("__c")
    if not custom and not standard:
        raise MetadataError(f"{where}: custom object names end in __c")
    unknown = set(doc) - _OBJECT_KEYS
    if unknown:
        raise MetadataError(f"{where}: unknown key(s) {sorted(unknown)}")
    sharing = doc.get("sharing")
    if sharing is not None and sharing not in SHARING_MODELS:
        raise MetadataError(f"{where}: sharing must be one of {', '.join(SHARING_MODELS)}")
    label = str(doc.get("label") or name.removesuffix("__c").replace("_", " "))
    plural = str(doc.get("plural_label") or label + "s")
    fields: list[FieldDef] = [AUDIT_FIELDS[0], _name_field(doc.get("name_field"), where)]
    fields.extend(AUDIT_FIELDS[1:])
    seen = {f.key for f in fields}
    for i, raw in enumerate(doc.get("fields") or []):
        if not isinstance(raw, dict):
            raise MetadataError(f"{where}: field #{i + 1} must be a mapping")
        f = parse_field(raw, where=where, custom_object=custom, standard=standard, object_name=name,
                        plural_label=plural)
        if f.key in seen:
            raise MetadataError(f"{where}, field {f.api_name!r}: defined twice")
        seen.add(f.key)
        fields.append(f)
    sharing = _sharing(sharing, fields, where, standard)
    track = bool(doc.get("track_history", False))
    if track:
        fields = [
            replace(f, track_history=True)
            if not f.standard and f.column is not None and "track_history" not in _raw_keys(doc, f.api_name)
            else f
            for f in fields
        ]
    rules = tuple(_rule(r, where) for r in doc.get("validation_rules") or [])
    prefix = doc.get("key_prefix")
    if prefix is not None and (not isinstance(prefix, str) or len(prefix) != 3):
        raise MetadataError(f"{where}: key_prefix must be 3 characters")
    extra = {k: doc[k] for k in ("layouts", "search_fields", "list_views", "compact_fields") if k in doc}
    obj = ObjectDef(
        api_name=name, label=label, plural_label=plural, key_prefix=prefix or "", fields=tuple(fields),
        sharing=sharing, track_history=track, custom=custom, role_hierarchy=bool(doc.get("role_hierarchy", True)),
        validation_rules=rules, description=doc.get("description"), renamed_from=doc.get("renamed_from"),
        extra=extra, indexes=parse_indexes(doc.get("indexes"), where), source=source,
    )
    obj = with_record_types(obj, doc.get("record_types"), where)
    _check_references_local(obj, where)
    check_indexes(obj, where)
    return replace(obj, indexes=with_derived(obj, obj.indexes))


def _sharing(declared: str | None, fields: list[FieldDef], where: str, standard: bool) -> str:
    """A detail (an object with a master-detail field) follows its master unless it says otherwise, as in
    Salesforce. Keel also lets a detail declare its own model (``private``, …): a detail whose records are
    confidential even to people who see the master. Controlled-by-parent needs a master to follow; only the standard
    Note and Attachment follow the parent of their polymorphic ``ParentId`` lookup instead."""
    has_master = any(f.type == "master_detail" for f in fields)
    if declared is None:
        return "controlled_by_parent" if has_master else "private"
    if declared == "controlled_by_parent" and not has_master and not standard:
        raise MetadataError(f"{where}: sharing controlled_by_parent needs a master_detail field (the parent whose "
                            "sharing the records follow)")
    return declared


def _raw_keys(doc: Mapping[str, Any], api_name: str) -> set[str]:
    for raw in doc.get("fields") or []:
        if isinstance(raw, dict) and str(raw.get("name", "")).lower() == api_name.lower():
            return set(raw)
    return set()


def _name_field(spec: Any, where: str) -> FieldDef:
    spec = dict(spec or {"type": "text"})
    kind = spec.get("type", "text")
    label = str(spec.get("label") or "Name")
    if kind == "text":
        length = int(spec.get("length", 80))
        if not 1 <= length <= 255:
            raise MetadataError(f"{where}, field 'Name': length must be between 1 and 255")
        return FieldDef("Name", "text", label, column="name", standard=True, required=True, length=length,
                        indexed=True)
    if kind == "auto_number":
        fmt = spec.get("format")
        if not isinstance(fmt, str) or not re.search(r"\{0+\}", fmt):
            raise MetadataError(f"{where}, field 'Name': auto_number needs a format such as \"POS-{{0000}}\"")
        return FieldDef("Name", "auto_number", label, column="name", standard=True, display_format=fmt,
                        indexed=True, length=80)
    if kind == "composite":
        parts = tuple(spec.get("parts") or ())
        if not parts:
            raise MetadataError(f"{where}, field 'Name': composite names list their parts")
        return FieldDef("Name", "composite", label, column="name", standard=True, parts=parts, indexed=True,
                        length=255)
    raise MetadataError(f"{where}, field 'Name': name_field type must be text, auto_number or composite")


def parse_field(raw: Mapping[str, Any], *, where: str, custom_object: bool, standard: bool, object_name: str,
                plural_label: str) -> FieldDef:
    name = raw.get("name")
    if not isinstance(name, str) or not _API_NAME.match(name):
        raise MetadataError(f"{where}: every field needs a 'name' that is an API name")
    at = f"{where}, field {name!r}"
    if not name.endswith("__c") and not standard:
        raise MetadataError(f"{at}: custom field names end in __c")
    kind = raw.get("type")
    if kind not in TYPES or kind in ("id", "composite"):
        allowed = ", ".join(t for t in TYPES if t not in ("id", "composite"))
        raise MetadataError(f"{at}: unknown type {kind!r}; use one of {allowed}")
    ftype = TYPES[kind]
    unknown = set(raw) - _COMMON_FIELD_KEYS - ftype.options
    if unknown:
        raise MetadataError(f"{at}: option(s) {sorted(unknown)} do not apply to type {kind}")
    label = str(raw.get("label") or name.removesuffix("__c").removesuffix("Id").replace("_", " ").strip() or name)
    kw: dict[str, Any] = {
        "required": _bool(raw, "required", at),
        "unique": _bool(raw, "unique", at),
        "external_id": _bool(raw, "external_id", at),
        "indexed": _bool(raw, "indexed", at),
        "track_history": _bool(raw, "track_history", at),
        "sensitive": _bool(raw, "sensitive", at),
        "help_text": raw.get("help_text"),
        "description": raw.get("description"),
        "renamed_from": raw.get("renamed_from"),
        "default": raw.get("default"),
        "standard": False,
    }
    if kw["external_id"] and kind not in ("text", "email", "number", "auto_number"):
        raise MetadataError(f"{at}: only text, email, number and auto_number fields can be external ids")
    if kind in ("text", "textarea", "longtext"):
        length = raw.get("length", ftype.default_length)
        if not isinstance(length, int) or not 1 <= length <= (ftype.max_length or 255):
            raise MetadataError(f"{at}: length must be an integer between 1 and {ftype.max_length}")
        kw["length"] = length
    elif kind in ("email", "phone", "url", "picklist", "multipicklist"):
        kw["length"] = ftype.default_length
    if kind in ("number", "currency", "percent"):
        precision = raw.get("precision", DEFAULT_PRECISION)
        scale = raw.get("scale", 0 if kind == "number" else 2)
        if not isinstance(precision, int) or not 1 <= precision <= 18:
            raise MetadataError(f"{at}: precision must be between 1 and 18")
        if not isinstance(scale, int) or not 0 <= scale <= precision:
            raise MetadataError(f"{at}: scale must be between 0 and the precision ({precision})")
        kw["precision"], kw["scale"] = precision, scale
    if kind in ("picklist", "multipicklist"):
        kw["values"] = _picklist_values(raw.get("values"), at)
        kw["restricted"] = _bool(raw, "restricted", at)
        kw["controlling_field"] = raw.get("controlling_field")
        if kw["unique"]:
            raise MetadataError(f"{at}: picklists cannot be unique")
    if kind in ("lookup", "master_detail"):
        _reference(raw, kind, name, at, kw, object_name, plural_label, standard)
    if kind == "auto_number":
        fmt = raw.get("format")
        if not isinstance(fmt, str) or not re.search(r"\{0+\}", fmt):
            raise MetadataError(f"{at}: auto_number needs a format such as \"INV-{{00000}}\"")
        kw["display_format"] = fmt
        kw["length"] = 80
    if kind == "formula":
        returns = raw.get("returns")
        if returns not in FORMULA_RETURNS:
            raise MetadataError(f"{at}: formula 'returns' must be one of {', '.join(FORMULA_RETURNS)}")
        if not isinstance(raw.get("formula"), str) or not raw["formula"].strip():
            raise MetadataError(f"{at}: formula fields need a 'formula'")
        blank_as = raw.get("blank_as", "zero")
        if blank_as not in ("zero", "blank"):
            raise MetadataError(f"{at}: blank_as must be zero or blank")
        kw.update(formula=raw["formula"], returns=returns, blank_as=blank_as, scale=raw.get("scale"))
        for flag in ("required", "unique", "external_id"):
            if kw[flag]:
                raise MetadataError(f"{at}: formula fields cannot be {flag}")
    if kind == "rollup":
        fn = str(raw.get("function", "")).upper()
        if fn not in ("COUNT", "SUM", "MIN", "MAX"):
            raise MetadataError(f"{at}: rollup function must be COUNT, SUM, MIN or MAX")
        if not raw.get("child"):
            raise MetadataError(f"{at}: rollup needs 'child' (the child relationship or object)")
        if fn != "COUNT" and not raw.get("field"):
            raise MetadataError(f"{at}: rollup {fn} needs 'field'")
        kw["rollup"] = {"function": fn, "child": raw["child"], "field": raw.get("field"), "filter": raw.get("filter")}
        kw["precision"], kw["scale"] = 18, 2
    column = None if kind == "formula" else ""
    f = FieldDef(api_name=name, type=kind, label=label, column=column, **kw)
    _check_default(f, at)
    return f


def _check_default(f: FieldDef, at: str) -> None:
    """A literal default goes through the type's coercer now, so a bad one fails the plan instead of every save."""
    d = f.default
    if d is None:
        return
    if isinstance(d, dict):
        if set(d) != {"formula"} or not isinstance(d["formula"], str) or not d["formula"].strip():
            raise MetadataError(f"{at}: default must be a literal value or {{formula: \"...\"}}")
        return
    coerce = value_coercer(f)
    if coerce is None:
        raise MetadataError(f"{at}: fields of type {f.type} take no literal default")
    try:
        value = coerce(d)
    except (FieldValueError, ValueError, TypeError, ArithmeticError) as exc:
        raise MetadataError(f"{at}: default {d!r} is not a valid {f.type} value ({exc})") from None
    if f.type == "picklist" and value is not None and f.picklist_value(str(value)) is None:
        raise MetadataError(f"{at}: default {d!r} is not one of the picklist's values")


def _reference(raw: Mapping[str, Any], kind: str, name: str, at: str, kw: dict[str, Any], object_name: str,
               plural_label: str, standard: bool) -> None:
    to = raw.get("to")
    targets = tuple(to) if isinstance(to, list) else (to,)
    if not targets or not all(isinstance(t, str) and _API_NAME.match(t) for t in targets):
        raise MetadataError(f"{at}: {kind} needs 'to', the object it points at")
    if kind == "master_detail" and len(targets) != 1:
        raise MetadataError(f"{at}: a master-detail field points at exactly one object")
    rel = raw.get("relationship_name")
    if rel is None:
        rel = name[:-3] + "__r" if name.endswith("__c") else (name[:-2] if name.endswith("Id") else name + "__r")
    child = raw.get("child_relationship_name")
    if child is None:
        base = re.sub(r"[^A-Za-z0-9]+", "_", plural_label).strip("_")
        child = base + "__r" if object_name.endswith("__c") else base
    # As in Salesforce, a required lookup cannot be cleared when its parent is deleted, so it blocks the delete.
    required_lookup = kind == "lookup" and kw["required"] and not standard
    on_delete = raw.get("on_delete", "cascade" if kind == "master_detail" else
                        "restrict" if required_lookup else "set_null")
    allowed = ("cascade",) if kind == "master_detail" else ("set_null", "restrict")
    if on_delete not in allowed:
        raise MetadataError(f"{at}: on_delete must be {' or '.join(allowed)}")
    if required_lookup and on_delete == "set_null":
        raise MetadataError(f"{at}: a required lookup cannot be cleared when its parent is deleted; use "
                            "on_delete: restrict")
    kw.update(reference_to=targets, relationship_name=rel, child_relationship_name=child, on_delete=on_delete,
              indexed=True)
    if kind == "master_detail":
        kw["required"] = True


def picklist_values(raw: Any, at: str) -> tuple[PicklistValue, ...]:
    """Parse a ``values:`` list as a package would, for screens that edit picklist values (setup)."""
    return _picklist_values(raw, at)


def _valid_for(raw: Any, at: str) -> tuple[str, ...]:
    """Controlling values as the text the lifecycle compares: YAML reads ``[true]`` or ``[3]`` as a boolean or a
    number, which would never equal the ``"true"`` or ``"3"`` a checkbox or picklist controller is matched as."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise MetadataError(f"{at}: 'valid_for' must be a list of controlling values")
    return tuple(("true" if v else "false") if isinstance(v, bool) else str(v) for v in raw)


def _picklist_values(raw: Any, at: str) -> tuple[PicklistValue, ...]:
    if not isinstance(raw, list) or not raw:
        raise MetadataError(f"{at}: picklists need a non-empty 'values' list")
    out: list[PicklistValue] = []
    seen: set[str] = set()
    for item in raw:
        if isinstance(item, dict):
            value = str(item.get("value", ""))
            pv = PicklistValue(value, str(item.get("label", value)), bool(item.get("active", True)),
                               bool(item.get("default", False)), _valid_for(item.get("valid_for"), at))
        else:
            value = str(item)
            pv = PicklistValue(value, value)
        if not value or value.lower() in seen or ";" in value:
            raise MetadataError(f"{at}: picklist value {value!r} is empty, repeated or contains ';'")
        seen.add(value.lower())
        out.append(pv)
    return tuple(out)


def _rule(raw: Any, where: str) -> ValidationRule:
    if not isinstance(raw, dict) or not raw.get("name") or not raw.get("condition") or not raw.get("message"):
        raise MetadataError(f"{where}: each validation rule needs name, condition and message")
    return ValidationRule(str(raw["name"]), str(raw["condition"]), str(raw["message"]), raw.get("field"),
                          bool(raw.get("active", True)))


def _bool(raw: Mapping[str, Any], key: str, at: str) -> bool:
    v = raw.get(key, False)
    if not isinstance(v, bool):
        raise MetadataError(f"{at}: {key} must be true or false")
    return v


def _check_references_local(obj: ObjectDef, where: str) -> None:
    names = {f.key for f in obj.fields}
    name_field = obj.find_field("Name")
    if name_field is not None and name_field.type == "composite":
        for part in name_field.parts:
            if part.lower() not in names:
                raise MetadataError(f"{where}, field 'Name': composite part {part!r} is not a field")
    for f in obj.fields:
        if f.controlling_field and f.controlling_field.lower() not in names:
            raise MetadataError(f"{where}, field {f.api_name!r}: controlling field {f.controlling_field!r} is unknown")
    for r in obj.validation_rules:
        if r.field and r.field.lower() not in names:
            raise MetadataError(f"{where}: validation rule {r.name!r} names unknown field {r.field!r}")


def check_cross_references(objects: Iterable[ObjectDef]) -> None:
    """Every lookup points at an object that exists in the resulting schema."""
    by_key = {o.key: o for o in objects}
    for o in by_key.values():
        for f in o.fields:
            for target in f.reference_to:
                if target.lower() not in by_key:
                    where = f"{o.source}: " if o.source else ""
                    raise MetadataError(f"{where}object {o.api_name!r}, field {f.api_name!r}: points at unknown "
                                        f"object {target!r}")
