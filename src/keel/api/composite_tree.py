"""``POST /composite/tree/{sObject}``: create nested parent/child records in one all-or-none call (Salesforce's
sObject Tree).

The request is read completely before anything is written, so every structural problem (a missing or duplicate
``referenceId``, a missing or wrong ``attributes.type``, an unknown child relationship, more than 200 records, more
than 5 types or more than 5 levels) is reported at once and costs no database work. Records are then saved level by
level, one ``save_many`` per object type per level, all in ONE transaction. That is how Salesforce fires triggers
(root records of all trees together, then all second-level records of the same type, …), and it means flows,
validation rules, roll-ups, object/field/record security and history apply exactly as for any other write. Each
child gets its parent's new id in the lookup field behind the child relationship. When any record fails, the
transaction is rolled back and the answer names only the records that failed, by ``referenceId``.

Results are listed in the order the records were created, as Salesforce lists them: every root record first, then
the second level, and so on; within a level, in request order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from keel.api import describe as D
from keel.api.errors import error, item_errors
from keel.api.routing import ApiCall, Reply
from keel.errors import ROLLED_BACK, BatchError, ErrorDetail, KeelError
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.records import save_many

MAX_RECORDS = 200
MAX_LEVELS = 5
MAX_TYPES = 5
_REFERENCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
_Problem = tuple[int | None, str | None, ErrorDetail]  # (record position or None, its referenceId, the error)


@dataclass
class _Node:
    """One record of the request, flattened; ``parent`` indexes the node list, ``link`` is our lookup to it."""

    ref: str | None
    slot: int  # position among the request's records: problems and results are per record
    obj: str
    fields: dict[str, Any]
    level: int
    parent: int | None
    link: str | None
    id: str | None = None


@dataclass
class _Reader:
    """Walks the request into nodes (depth first, request order), collecting problems keyed by referenceId."""

    call: ApiCall
    schema: SchemaSnapshot
    nodes: list[_Node] = field(default_factory=list)
    problems: list[_Problem] = field(default_factory=list)
    refs: list[str | None] = field(default_factory=list)  # every record's referenceId, in request order
    types: dict[str, int] = field(default_factory=dict)  # object -> slot of its first record

    def fail(self, slot: int | None, code: str, message: str, fields: tuple[str, ...] = ()) -> None:
        self.problems.append((slot, None if slot is None else self.refs[slot], ErrorDetail(code, message, fields)))

    def walk(self, records: list[Any], expected: ObjectDef, level: int, parent: int | None, link: str | None,
             where: str) -> None:
        for rec in records:
            if not isinstance(rec, dict):
                self.fail(None, "JSON_PARSER_ERROR", f"Every item of {where} must be a JSON object.")
                continue
            attrs = rec.get("attributes")
            attrs = attrs if isinstance(attrs, dict) else {}
            slot = len(self.refs)
            self.refs.append(self._reference(attrs.get("referenceId")))
            self._check_reference(slot, attrs.get("referenceId"))
            if level > MAX_LEVELS:
                self.fail(slot, "LIMIT_EXCEEDED", f"An sObject tree has at most {MAX_LEVELS} levels; this record "
                          f"is at level {level}.")
                continue  # not read further: its children would only repeat the problem
            typ = attrs.get("type")
            if not isinstance(typ, str) or not typ:
                self.fail(slot, "INVALID_TYPE", "Must specify a type in attributes.")
            elif typ.lower() != expected.key:
                if parent is None:
                    self.fail(slot, "INVALID_TYPE", f"The record type '{typ}' does not match the type in the URL, "
                              f"'{expected.api_name}'.")
                else:
                    self.fail(slot, "INVALID_TYPE", f"The record type '{typ}' does not match the child "
                              f"relationship {where}, which holds {expected.api_name} records.")
            self.types.setdefault(expected.api_name, slot)
            index = len(self.nodes)
            node = _Node(self.refs[slot], slot, expected.api_name, {}, level, parent, link)
            self.nodes.append(node)
            for key, value in rec.items():
                if key == "attributes":
                    continue
                if isinstance(value, dict):
                    self._children(node, index, expected, key, value)
                elif key.lower() == "id":
                    self.fail(slot, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. An "
                              "sObject tree only creates records.", ("Id",))
                elif link is not None and key.lower() == link.lower():
                    self.fail(slot, "INVALID_FIELD", f"{link} is set to the parent record by the tree; leave it "
                              "out of the child record.", (link,))
                else:
                    node.fields[key] = value

    @staticmethod
    def _reference(raw: Any) -> str | None:
        return None if raw is None or raw == "" else str(raw)

    def _check_reference(self, slot: int, raw: Any) -> None:
        if raw is None or raw == "":
            self.fail(slot, "INVALID_INPUT", "Include a referenceId in the attributes of every record.")
        elif not isinstance(raw, str) or not _REFERENCE_ID.fullmatch(raw):
            self.fail(slot, "INVALID_INPUT", f"Invalid referenceId '{raw}': it must start with a letter or digit "
                      "and hold only letters, digits and underscores.")

    def _children(self, node: _Node, index: int, obj: ObjectDef, key: str, value: dict[str, Any]) -> None:
        rel = self.schema.find_child_relationship(obj, key)
        if rel is None:
            self.fail(node.slot, "INVALID_FIELD", f"No such child relationship '{key}' on entity "
                      f"'{obj.api_name}'. Use a child relationship name from the describe of {obj.api_name}.",
                      (key,))
            return
        try:
            _, child = D.visible_object(self.call, rel.child_object)
        except KeelError:
            self.fail(node.slot, "INVALID_FIELD", f"No such child relationship '{key}' on entity "
                      f"'{obj.api_name}'.", (key,))
            return
        records = value.get("records")
        if not isinstance(records, list):
            self.fail(node.slot, "JSON_PARSER_ERROR", f"The child relationship {key} needs a 'records' array.",
                      (key,))
            return
        self.walk(records, child, node.level + 1, index, rel.field, f"{obj.api_name}.{rel.name}")

    def check_limits(self) -> None:
        """Whole-request rules, after the walk: duplicates, the record count and the number of types."""
        seen: dict[str, int] = {}
        for ref in self.refs:
            if ref is not None:
                seen[ref] = seen.get(ref, 0) + 1
        for slot, ref in enumerate(self.refs):  # one result for each instance of a duplicate, as Salesforce has it
            if ref is not None and seen[ref] > 1:
                self.fail(slot, "INVALID_INPUT", f"Duplicate ReferenceId '{ref}' provided in the request.")
        if len(self.refs) > MAX_RECORDS:
            self.fail(MAX_RECORDS, "LIMIT_EXCEEDED", f"An sObject tree request creates at most "
                      f"{MAX_RECORDS} records; this one has {len(self.refs)}.")
        if len(self.types) > MAX_TYPES:
            extra = list(self.types)[MAX_TYPES]
            self.fail(self.types[extra], "LIMIT_EXCEEDED", f"An sObject tree request holds records of at most "
                      f"{MAX_TYPES} types; {extra} is the {MAX_TYPES + 1}th.")


class _Rollback(Exception):
    """Raised inside the transaction to undo every record of the request."""


def tree(call: ApiCall, obj_name: str) -> Reply:
    schema, root = D.visible_object(call, obj_name)
    body = call.json_object()
    records = body.get("records")
    if not isinstance(records, list) or not records:
        raise error("JSON_PARSER_ERROR", "The request body needs a non-empty 'records' array.")
    reader = _Reader(call, schema)
    reader.walk(records, root, 1, None, None, "records")
    reader.check_limits()
    if reader.problems:
        return _failed(reader.problems)
    nodes = reader.nodes
    failures: list[_Problem] = []
    try:
        with call.writing() as conn:
            live: set[str] = set()
            for level in range(1, MAX_LEVELS + 1):
                groups: dict[str, list[int]] = {}
                for i, n in enumerate(nodes):
                    if n.level == level:
                        groups.setdefault(n.obj, []).append(i)
                for obj, members in groups.items():
                    failures = _save_group(call, conn, nodes, obj, members, live)
                    if failures:
                        raise _Rollback
    except _Rollback:
        return _failed(failures)
    order = sorted(range(len(nodes)), key=lambda i: (nodes[i].level, i))
    return Reply(201, {"hasErrors": False, "results": [{"referenceId": nodes[i].ref, "id": nodes[i].id}
                                                       for i in order]})


def _save_group(call: ApiCall, conn: Connection, nodes: list[_Node], obj: str, members: list[int], live: set[str],
                ) -> list[_Problem]:
    """Save one object's records of one level; return the failures (nothing is kept when there are any)."""
    drafts: list[dict[str, Any]] = []
    for i in members:
        n = nodes[i]
        draft = dict(n.fields)
        if n.link is not None and n.parent is not None:
            draft[n.link] = nodes[n.parent].id
        drafts.append(draft)
    try:
        results = save_many(call.ctx, obj, drafts, all_or_none=True, conn=conn, live=frozenset(live))
    except BatchError as e:
        results = e.results
    except KeelError as e:  # a problem with the whole group (e.g. automation looping): blame its first record
        first = nodes[members[0]]
        return [(first.slot, first.ref, ErrorDetail(e.code, e.message, e.fields))]
    failures: list[_Problem] = [(nodes[members[r.index]].slot, nodes[members[r.index]].ref, d)
                for r in results for d in r.errors if d.code != ROLLED_BACK]
    if not failures and any(r.errors for r in results):
        first = nodes[members[0]]
        failures = [(first.slot, first.ref, ErrorDetail(ROLLED_BACK, "The request was rolled back."))]
    if failures:
        return failures
    for i, r in zip(members, results, strict=True):
        nodes[i].id = r.id
        if r.id:
            live.add(r.id)
    return []


def _failed(problems: list[_Problem]) -> Reply:
    """400 with one result per failing record, in request order, each with all its errors; nothing was written.

    Results are per record, not per referenceId: each instance of a duplicate referenceId gets its own result."""
    per_record: dict[int, tuple[str | None, list[ErrorDetail]]] = {}
    loose: list[tuple[str | None, list[ErrorDetail]]] = []  # items that are not even records
    for slot, ref, detail in problems:
        if slot is None:
            loose.append((ref, [detail]))
        else:
            per_record.setdefault(slot, (ref, []))[1].append(detail)
    items = [per_record[k] for k in sorted(per_record)] + loose
    return Reply(400, {"hasErrors": True, "results": [{"referenceId": ref, "errors": item_errors(errs)}
                                                      for ref, errs in items]})
