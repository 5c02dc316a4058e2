"""Permission sets and profiles as YAML (``permission_sets/*.yaml``), so apps ship their own access model.

    name: Recruiter                  # API name of the permission set (or the profile's name)
    label: Recruiter
    profile: false                   # true: a Profile with its owned permission set
    system: [ApiEnabled, ExportReport]
    objects:
      Position__c: [read, create, edit, view_all]
    fields:
      Position__c.Salary__c: [read]   # read | edit (edit implies read)

Parsing is pure and checks every name against the schema, so a typo fails the deploy instead of silently
granting nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import MetadataError
from keel.metadata.model import SchemaSnapshot
from keel.yamlio import load_yaml

OBJECT_ACTIONS = ("read", "create", "edit", "delete", "view_all", "modify_all")
SYSTEM = ("ModifyAllData", "ViewAllData", "ManageUsers", "CustomizeApplication", "ApiEnabled", "ExportReport",
          "ViewSetup", "ForceTwoFactor")


@dataclass(frozen=True)
class PermissionSetSpec:
    name: str
    label: str
    profile: bool
    system: tuple[str, ...]
    objects: dict[str, tuple[str, ...]]
    fields: dict[str, tuple[bool, bool]]  # "Object.Field" -> (read, edit)
    description: str | None = None


def parse_permission_set(doc: dict[str, Any], *, source: str = "<permission set>") -> PermissionSetSpec:
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise MetadataError(f"{source}: a permission set needs a 'name'")
    unknown = set(doc) - {"name", "label", "profile", "system", "objects", "fields", "description"}
    if unknown:
        raise MetadataError(f"{source}: unknown key(s) {sorted(unknown)}")
    system = tuple(doc.get("system") or ())
    bad = [s for s in system if s not in SYSTEM]
    if bad:
        raise MetadataError(f"{source}: unknown system permission(s) {bad}; use {', '.join(SYSTEM)}")
    objects: dict[str, tuple[str, ...]] = {}
    for obj, actions in (doc.get("objects") or {}).items():
        acts = tuple(actions or ())
        wrong = [a for a in acts if a not in OBJECT_ACTIONS]
        if wrong:
            raise MetadataError(f"{source}: object {obj}: unknown action(s) {wrong}")
        objects[str(obj)] = acts
    fields: dict[str, tuple[bool, bool]] = {}
    for fname, perms in (doc.get("fields") or {}).items():
        ps = set(perms or ())
        if ps - {"read", "edit"} or "." not in str(fname):
            raise MetadataError(f"{source}: field {fname}: use 'Object.Field: [read, edit]'")
        fields[str(fname)] = ("read" in ps or "edit" in ps, "edit" in ps)
    return PermissionSetSpec(name, str(doc.get("label") or name), bool(doc.get("profile", False)), system, objects,
                             fields, doc.get("description"))


def load_permission_sets(path: str | Path) -> list[PermissionSetSpec]:
    root = Path(path)
    folder = root / "permission_sets" if (root / "permission_sets").is_dir() else root
    out = []
    for p in sorted(folder.glob("*.y*ml")):
        doc = load_yaml(p.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise MetadataError(f"{p.name}: expected a mapping")
        out.append(parse_permission_set(doc, source=p.name))
    return out


def check_against(spec: PermissionSetSpec, schema: SchemaSnapshot) -> None:
    for obj in spec.objects:
        if schema.find_object(obj) is None:
            raise MetadataError(f"permission set {spec.name}: unknown object {obj}")
    for name in spec.fields:
        o, _, f = name.partition(".")
        od = schema.find_object(o)
        if od is None or od.find_field(f) is None:
            raise MetadataError(f"permission set {spec.name}: unknown field {name}")
