"""Deployed definitions, read from ``keel_automation_def`` and cached per automation version.

A deploy bumps ``automation_version`` in ``keel_meta`` in its transaction; every save reads that one row and
reloads only when it moved, so a deploy is seen by the next save of every process without any global cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.automation.definitions import ApprovalProcess, Flow, parse_approval, parse_flow
from keel.automation.tables import create_automation_tables, definitions
from keel.storage import system as S

VERSION_KEY = "automation_version"
MEMO = "keel_automation_memo"  # conn.info key: (registry, transaction, Loaded)


@dataclass(frozen=True)
class Loaded:
    version: str | None
    flows: dict[str, tuple[Flow, ...]] = field(default_factory=dict)  # object key -> active flows
    approvals: dict[str, ApprovalProcess] = field(default_factory=dict)  # process name -> process

    def flows_for(self, obj_key: str) -> tuple[Flow, ...]:
        return self.flows.get(obj_key, ())

    def approvals_for(self, obj_name: str) -> list[ApprovalProcess]:
        return [p for p in self.approvals.values() if p.object.lower() == obj_name.lower() and p.active]


EMPTY = Loaded(None)


class Registry:
    """Per-hooks-object cache of the deployed definitions (no module-level state)."""

    def __init__(self) -> None:
        self._loaded = EMPTY
        self._lock = threading.Lock()

    def get(self, conn: Connection) -> Loaded:
        """The definitions at the version ``conn`` sees, read once per transaction (a save asks before and after
        writing; a deploy in the same transaction forgets the memo, see ``bump``)."""
        tx = conn.get_transaction()
        memo = conn.info.get(MEMO)
        if tx is not None and memo is not None and memo[0] is self and memo[1] is tx:
            hit: Loaded = memo[2]
            return hit
        loaded = self._read(conn)
        if tx is not None:
            conn.info[MEMO] = (self, tx, loaded)
        return loaded

    def _read(self, conn: Connection) -> Loaded:
        version = S.get_meta(conn, VERSION_KEY)
        if version is None:
            return EMPTY
        current = self._loaded
        if current.version == version:
            return current
        loaded = load(conn, version)
        with self._lock:
            self._loaded = loaded
        return loaded


def load(conn: Connection, version: str | None) -> Loaded:
    flows: dict[str, list[Flow]] = {}
    approvals: dict[str, ApprovalProcess] = {}
    for kind, name, doc in conn.execute(sa.select(definitions.c.kind, definitions.c.name, definitions.c.definition)
                                        .order_by(definitions.c.name)):
        data = orjson.loads(doc)
        if kind == "flow":
            f = parse_flow(data, name)
            if f.active:
                flows.setdefault(f.object.lower(), []).append(f)
        else:
            approvals[name] = parse_approval(data, name)
    return Loaded(version, {k: tuple(v) for k, v in flows.items()}, approvals)


def store(conn: Connection, flows: list[Flow], approvals: list[ApprovalProcess], *, replace_all: bool = False) -> int:
    """Upsert definitions (and with ``replace_all`` drop the rest), then bump the version; returns the count."""
    create_automation_tables(conn)
    rows: list[dict[str, Any]] = [
        {"kind": "flow", "name": f.name, "object": f.object, "active": f.active,
         "definition": orjson.dumps(f.source).decode()} for f in flows]
    rows += [{"kind": "approval", "name": p.name, "object": p.object, "active": p.active,
              "definition": orjson.dumps(p.source).decode()} for p in approvals]
    if replace_all:
        conn.execute(sa.delete(definitions))
    for r in rows:
        conn.execute(sa.delete(definitions).where(definitions.c.kind == r["kind"], definitions.c.name == r["name"]))
    if rows:
        conn.execute(sa.insert(definitions), rows)
    bump(conn)
    return len(rows)


def bump(conn: Connection) -> None:
    conn.info.pop(MEMO, None)
    current = S.get_meta(conn, VERSION_KEY)
    S.set_meta(conn, VERSION_KEY, str(int(current or 0) + 1))
