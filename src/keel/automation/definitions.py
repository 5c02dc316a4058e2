"""Flow and approval-process definitions: parsed from ``flows/*.yaml`` and ``approvals/*.yaml`` in a package.

Every formula is type-checked against the schema at deploy time (``check_flow`` / ``check_approval``), so a typo
fails ``keel apply`` with the file and the action named, not the first save that hits it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keel.errors import MetadataError
from keel.formula import FormulaError, bind
from keel.metadata.model import SchemaSnapshot
from keel.yamlio import load_yaml

EVENTS = ("created", "updated", "created_or_updated", "deleted", "undeleted")
ACTION_KINDS = ("update", "create", "email", "webhook", "note", "submit_for_approval")
APPROVER_KINDS = ("user", "manager", "role", "queue")
_OFFSET = re.compile(r"^\s*([+-]?\d+)\s*(hour|hours|day|days)\s*$")


@dataclass(frozen=True)
class Action:
    kind: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class ScheduledPath:
    name: str
    offset_hours: int  # negative: before the date field
    date_field: str | None  # None: relative to the moment the flow fired
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Flow:
    name: str
    object: str
    event: str
    condition: str | None = None
    only_when_changed: bool = False
    active: bool = True
    set_fields: Mapping[str, str] = field(default_factory=dict)  # before-save: field -> formula
    actions: tuple[Action, ...] = ()
    scheduled_paths: tuple[ScheduledPath, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)

    def fires_on(self, kind: str) -> bool:
        """``kind`` is created | updated | deleted | undeleted."""
        return self.event == kind or (self.event == "created_or_updated" and kind in ("created", "updated"))


@dataclass(frozen=True)
class Approver:
    kind: str  # user | manager | role | queue
    name: str | None = None  # username, role name or queue DeveloperName


@dataclass(frozen=True)
class Step:
    name: str
    approvers: tuple[Approver, ...]
    mode: str = "first_response"  # or unanimous
    criteria: str | None = None  # step entry criteria; a step whose criteria are false is skipped
    # run as the approver when this step is approved (Salesforce's per-step "approval actions"), so a process can
    # record who approved each step, not only the final approver
    on_approve: tuple[Action, ...] = ()


@dataclass(frozen=True)
class ApprovalProcess:
    name: str
    object: str
    entry_criteria: str | None
    steps: tuple[Step, ...]
    lock: bool = True
    active: bool = True
    on_submit: tuple[Action, ...] = ()
    on_approve: tuple[Action, ...] = ()
    on_reject: tuple[Action, ...] = ()
    on_recall: tuple[Action, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)


def _actions(raw: Any, where: str) -> tuple[Action, ...]:
    """Actions are a list of one-key mappings; ``set`` is accepted as a shorthand for updating the record."""
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        raw = [{k: v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise MetadataError(f"{where}: actions must be a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or len(item) != 1:
            raise MetadataError(f"{where}: action #{i + 1} must be a mapping with one key ({', '.join(ACTION_KINDS)})")
        ((kind, spec),) = item.items()
        if kind == "set":
            kind, spec = "update", {"target": "self", "values": spec}
        if kind not in ACTION_KINDS:
            raise MetadataError(f"{where}: action #{i + 1}: unknown kind {kind!r}")
        if not isinstance(spec, Mapping):
            raise MetadataError(f"{where}: action #{i + 1} ({kind}) needs a mapping")
        out.append(Action(str(kind), dict(spec)))
    return tuple(out)


def parse_offset(text: Any, where: str) -> int:
    if isinstance(text, int):
        return text * 24
    m = _OFFSET.match(str(text or "0 hours"))
    if not m:
        raise MetadataError(f"{where}: offset must look like '-90 days' or '2 hours'")
    n = int(m.group(1))
    return n * 24 if m.group(2).startswith("day") else n


def parse_flow(doc: Mapping[str, Any], source: str = "<flow>") -> Flow:
    name = doc.get("flow")
    where = f"{source}: flow {name!r}"
    if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
        raise MetadataError(f"{where}: 'flow' must be an API-style name")
    event = doc.get("event", "created_or_updated")
    if event not in EVENTS:
        raise MetadataError(f"{where}: event must be one of {', '.join(EVENTS)}")
    before = doc.get("before_save") or {}
    sets = before.get("set", before) if isinstance(before, Mapping) else None
    if not isinstance(sets, Mapping):
        raise MetadataError(f"{where}: before_save must map field names to formulas")
    paths: list[ScheduledPath] = []
    for p in doc.get("scheduled_paths") or []:
        pname = str(p.get("name") or f"path{len(paths) + 1}")
        paths.append(ScheduledPath(pname, parse_offset(p.get("offset"), f"{where}, path {pname}"), p.get("field"),
                                   _actions(p.get("actions"), f"{where}, path {pname}")))
    if event in ("deleted", "undeleted") and (sets or paths):
        raise MetadataError(f"{where}: delete and undelete flows cannot set fields or schedule paths")
    return Flow(name=name, object=str(doc.get("object") or ""), event=event, condition=doc.get("condition"),
                only_when_changed=bool(doc.get("only_when_changed", False)), active=bool(doc.get("active", True)),
                set_fields={str(k): str(v) for k, v in sets.items()}, actions=_actions(doc.get("actions"), where),
                scheduled_paths=tuple(paths), source=dict(doc))


def _approver(raw: Any, where: str) -> Approver:
    if raw == "manager":
        return Approver("manager")
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise MetadataError(f"{where}: an approver is 'manager' or one of {{user|role|queue: name}}")
    ((kind, name),) = raw.items()
    if kind not in APPROVER_KINDS:
        raise MetadataError(f"{where}: unknown approver kind {kind!r}")
    return Approver(str(kind), None if kind == "manager" else str(name))


def parse_approval(doc: Mapping[str, Any], source: str = "<approval>") -> ApprovalProcess:
    name = doc.get("approval")
    where = f"{source}: approval {name!r}"
    if not isinstance(name, str) or not name:
        raise MetadataError(f"{where}: 'approval' must name the process")
    steps = []
    for i, s in enumerate(doc.get("steps") or []):
        sname = str(s.get("name") or f"Step {i + 1}")
        raw = s.get("approvers") or ([s["approver"]] if "approver" in s else [])
        if not raw:
            raise MetadataError(f"{where}, step {sname}: needs approvers")
        mode = s.get("mode", "first_response")
        if mode not in ("first_response", "unanimous"):
            raise MetadataError(f"{where}, step {sname}: mode is first_response or unanimous")
        steps.append(Step(sname, tuple(_approver(a, f"{where}, step {sname}") for a in raw), mode,
                          s.get("criteria"), _actions(s.get("on_approve"), f"{where}, step {sname}")))
    if not steps:
        raise MetadataError(f"{where}: an approval process needs at least one step")
    return ApprovalProcess(
        name=name, object=str(doc.get("object") or ""), entry_criteria=doc.get("entry_criteria"), steps=tuple(steps),
        lock=bool(doc.get("lock", True)), active=bool(doc.get("active", True)),
        on_submit=_actions(doc.get("on_submit"), where), on_approve=_actions(doc.get("on_approve"), where),
        on_reject=_actions(doc.get("on_reject"), where), on_recall=_actions(doc.get("on_recall"), where),
        source=dict(doc))


def load_definitions(path: str | Path) -> tuple[list[Flow], list[ApprovalProcess]]:
    root = Path(path)
    flows: list[Flow] = []
    approvals: list[ApprovalProcess] = []
    for folder in ("flows", "approvals"):
        d = root / folder
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.y*ml")):
            try:
                doc = load_yaml(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise MetadataError(f"{p.name}: invalid YAML: {exc}") from None
            docs = doc if isinstance(doc, list) else [doc]
            for one in docs:
                if not isinstance(one, Mapping):
                    raise MetadataError(f"{p.name}: expected a mapping")
                if folder == "flows":
                    flows.append(parse_flow(one, p.name))
                else:
                    approvals.append(parse_approval(one, p.name))
    return flows, approvals


def _formula(text: str, obj_name: str, schema: SchemaSnapshot, where: str, returns: str | None = None) -> None:
    obj = schema.find_object(obj_name)
    if obj is None:
        raise MetadataError(f"{where}: no object {obj_name!r}")
    try:
        bind(text, obj, schema, context_kind="flow", blank_as="blank", returns=returns)
    except FormulaError as e:
        raise MetadataError(f"{where}: {e}") from None


def _check_actions(actions: tuple[Action, ...], obj_name: str, schema: SchemaSnapshot, where: str) -> None:
    obj = schema.get_object(obj_name)
    for a in actions:
        w = f"{where}, {a.kind} action"
        if a.kind in ("update", "create"):
            values = a.spec.get("values") or {}
            for v in values.values():
                _formula(str(v), obj_name, schema, w)
            if a.kind == "create":
                target = schema.find_object(str(a.spec.get("object") or ""))
                if target is None:
                    raise MetadataError(f"{w}: no object {a.spec.get('object')!r}")
                for k in values:
                    target.get_field(str(k))
            else:
                t = str(a.spec.get("target", "self"))
                if t != "self":
                    f = obj.find_field(t)
                    if f is None or not f.is_relationship:
                        raise MetadataError(f"{w}: target must be 'self' or a lookup field of {obj_name}")
        elif a.kind == "email" and not a.spec.get("to"):
            raise MetadataError(f"{w}: needs 'to'")
        elif a.kind == "webhook" and not str(a.spec.get("url", "")).startswith(("http://", "https://")):
            raise MetadataError(f"{w}: needs an http(s) url")
        elif a.kind == "note" and "ParentId" in {f.api_name for f in schema.get_object("Note").fields}:
            targets = schema.get_object("Note").get_field("ParentId").reference_to
            if obj_name not in targets:
                raise MetadataError(f"{w}: notes can be posted on {', '.join(targets)} records, not {obj_name}")


def check_flow(flow: Flow, schema: SchemaSnapshot) -> None:
    where = f"flow {flow.name}"
    obj = schema.find_object(flow.object)
    if obj is None:
        raise MetadataError(f"{where}: no object {flow.object!r}")
    if flow.condition:
        _formula(flow.condition, flow.object, schema, f"{where}, condition", "checkbox")
    for name, text in flow.set_fields.items():
        obj.get_field(name)
        _formula(text, flow.object, schema, f"{where}, before_save {name}")
    _check_actions(flow.actions, flow.object, schema, where)
    for p in flow.scheduled_paths:
        if p.date_field is not None:
            f = obj.get_field(p.date_field)
            if f.type not in ("date", "datetime") and not (f.type == "formula" and f.returns in ("date", "datetime")):
                raise MetadataError(f"{where}, path {p.name}: {p.date_field} is not a date or datetime field")
        _check_actions(p.actions, flow.object, schema, f"{where}, path {p.name}")


def check_approval(proc: ApprovalProcess, schema: SchemaSnapshot) -> None:
    where = f"approval {proc.name}"
    if schema.find_object(proc.object) is None:
        raise MetadataError(f"{where}: no object {proc.object!r}")
    if proc.entry_criteria:
        _formula(proc.entry_criteria, proc.object, schema, f"{where}, entry_criteria", "checkbox")
    for s in proc.steps:
        if s.criteria:
            _formula(s.criteria, proc.object, schema, f"{where}, step {s.name}", "checkbox")
        _check_actions(s.on_approve, proc.object, schema, f"{where}, step {s.name}")
    for acts in (proc.on_submit, proc.on_approve, proc.on_reject, proc.on_recall):
        _check_actions(acts, proc.object, schema, where)
