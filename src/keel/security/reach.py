"""Managers inherit their subordinates' shares, at the cost of one range probe.

With "grant access using hierarchies" (Salesforce's default, ``role_hierarchy`` on an object), a share reaches
the grantee and every user whose role is above the role of someone the grantee covers. Probing the principals of
everyone below a manager at query time cost one index seek per user and group below (about 330 for a mid-level
manager), which made a 50-row list several times the unshared query. Instead:

- every role gets a pre-order position ``lo`` and the last position ``hi`` of its subtree (``keel_role_span``),
  so the roles strictly below a role are one interval ``(lo, hi]``;
- every share is stored once more, per role position it reaches (``keel_share_reach``: the roles of the active
  users its grantee covers), indexed by ``(object_id, pos, record_id, access_level)``;
- the predicate adds ``record_id FROM keel_share_reach WHERE object_id = :o AND pos > :lo AND pos <= :hi`` to
  the share list it already builds: one range scan, whatever the number of users below.

The rows are derived data: ``rebuild`` recomputes them all inside the recalculation (a role move renumbers the
tree; a membership change moves grantees), and ``refresh`` recomputes the rows of the records whose shares a
write just changed, in the same transaction.

``refresh`` and ``forget`` also keep each record's ``is_shared`` flag (it has a ``keel_share`` row). A manager's
list sorted by Name walks about 50 / (visible fraction) entries of the Name index, which carries the flag; probing
the shares of the ~1% of entries that have any is far cheaper than building the whole share list for every page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for
from keel.security.principals import KIND_MASK, ROLE_SUB, col, live
from keel.security.tables import principal_members, role_spans, share_reach, shares

_CHUNK = 500


def spans(parents: Mapping[int, int | None]) -> dict[int, tuple[int, int]]:
    """(lo, hi) per role from a pre-order walk of the forest, children in pk order so the numbering is stable."""
    children: dict[int | None, list[int]] = {}
    for role, parent in parents.items():
        children.setdefault(parent if parent in parents else None, []).append(role)
    out: dict[int, tuple[int, int]] = {}
    counter = 0
    for root in sorted(children.get(None, ())):
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:
            role, done = stack.pop()
            if done:
                out[role] = (out[role][0], counter)
                continue
            counter += 1
            out[role] = (counter, counter)
            stack.append((role, True))
            stack.extend((c, False) for c in sorted(children.get(role, ()), reverse=True))
    return out


def write_spans(conn: Connection, table: Mapping[int, tuple[int, int]]) -> None:
    conn.execute(sa.delete(role_spans))
    rows = [{"role_id": r, "lo": lo, "hi": hi} for r, (lo, hi) in table.items()]
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(role_spans), rows[start:start + 5000])


def role_span(conn: Connection, role_pk: int | None) -> tuple[int, int] | None:
    """The interval of positions strictly below ``role_pk``; None when nothing is below it."""
    if role_pk is None:
        return None
    row = conn.execute(sa.select(role_spans.c.lo, role_spans.c.hi).where(role_spans.c.role_id == role_pk)).first()
    return (int(row[0]), int(row[1])) if row is not None and row[1] > row[0] else None


class _Positions:
    """Role positions a grantee reaches, read lazily: users' roles from User, group and role members from the
    closure. A role-and-subordinates grantee reaches just its own role's position when anyone is in its
    subtree: everyone above that role is above a member, and everyone inside it who is above a member is one."""

    def __init__(self, conn: Connection, schema: SchemaSnapshot) -> None:
        self.conn, self.schema = conn, schema
        self.pos = {int(r): int(lo) for r, lo in conn.execute(sa.select(role_spans.c.role_id, role_spans.c.lo))}
        self.user_pos: dict[int, int | None] = {}
        self.cache: dict[int, frozenset[int]] = {}

    def _users(self, users: Iterable[int]) -> None:
        wanted = sorted({u for u in users if u not in self.user_pos})
        if not wanted:
            return
        ut = live(self.schema, "User")
        role, active = col(self.schema, "User", "UserRoleId"), col(self.schema, "User", "IsActive")
        for part in range(0, len(wanted), _CHUNK):
            chunk = wanted[part:part + _CHUNK]
            for u in chunk:
                self.user_pos[u] = None
            q = sa.select(ut.c.id, role).where(ut.c.id.in_(chunk), ut.c.is_deleted == sa.false(), active == sa.true())
            for pk, r in self.conn.execute(q):
                self.user_pos[int(pk)] = self.pos.get(int(r)) if r is not None else None

    def load(self, principals: Iterable[int]) -> None:
        todo = sorted({p for p in principals if p not in self.cache})
        users = [p for p in todo if not p & KIND_MASK]
        groups = [p for p in todo if p & KIND_MASK]
        members: dict[int, set[int]] = {p: set() for p in groups}
        for part in range(0, len(groups), _CHUNK):
            q = sa.select(principal_members.c.principal, principal_members.c.user_id).where(
                principal_members.c.principal.in_(groups[part:part + _CHUNK]))
            for p, u in self.conn.execute(q):
                members[int(p)].add(int(u))
        self._users([*users, *(u for us in members.values() for u in us)])
        for u in users:
            got = self.user_pos.get(u)
            self.cache[u] = frozenset(() if got is None else (got,))
        for p, us in members.items():
            reached = frozenset(x for u in us if (x := self.user_pos.get(u)) is not None)
            if p & KIND_MASK == ROLE_SUB and reached:
                own = self.pos.get(p & ~KIND_MASK)
                reached = frozenset(() if own is None else (own,))
            self.cache[p] = reached


def _rows(found: Iterable[Any], where: _Positions) -> list[dict[str, int]]:
    """keel_share_reach rows for share rows (object_id, record_id, principal, access_level): the highest level per
    (object, position, record)."""
    best: dict[tuple[int, int, int], int] = {}
    for obj, rec, principal, level in found:
        for pos in where.cache.get(int(principal), ()):
            k = (int(obj), pos, int(rec))
            if best.get(k, 0) < int(level):
                best[k] = int(level)
    return [{"object_id": o, "pos": p, "record_id": r, "access_level": lv} for (o, p, r), lv in best.items()]


def _insert(conn: Connection, rows: list[dict[str, int]]) -> None:
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(share_reach), rows[start:start + 5000])


_SHARE_COLS = (shares.c.object_id, shares.c.record_id, shares.c.principal, shares.c.access_level)


def rebuild(conn: Connection, schema: SchemaSnapshot) -> int:
    """Recompute every reach row from ``keel_share`` and the closures (which must be current). Returns the count."""
    found = conn.execute(sa.select(*_SHARE_COLS)).all()
    where = _Positions(conn, schema)
    where.load(int(r[2]) for r in found)
    rows = _rows(found, where)
    conn.execute(sa.delete(share_reach))
    _insert(conn, rows)
    return len(rows)


def refresh(conn: Connection, schema: SchemaSnapshot, object_id: int, record_ids: Iterable[int]) -> None:
    """Recompute the reach rows and shared flags of these records after their share rows changed (written,
    deleted, moved)."""
    recs = sorted(set(record_ids))
    obj = _object(schema, object_id)
    for start in range(0, len(recs), _CHUNK):
        part = recs[start:start + _CHUNK]
        if obj is not None and conn.dialect.name == "postgresql":
            # Two transactions changing shares of one record would each recompute from their own snapshot, and the
            # later commit would keep rows and a flag missing the other's share: lock the records first (in id
            # order, so concurrent writers cannot deadlock). SQLite has one writer at a time.
            t = table_for(schema, obj)
            conn.execute(sa.select(t.c.id).where(t.c.id.in_(part)).order_by(t.c.id).with_for_update())
        conn.execute(sa.delete(share_reach).where(share_reach.c.object_id == object_id,
                                                  share_reach.c.record_id.in_(part)))
        found = conn.execute(sa.select(*_SHARE_COLS).where(shares.c.object_id == object_id,
                                                           shares.c.record_id.in_(part))).all()
        if found:
            where = _Positions(conn, schema)
            where.load(int(r[2]) for r in found)
            _insert(conn, _rows(found, where))
        if obj is not None:
            _flag(conn, schema, obj, sorted({int(r[1]) for r in found}), part)


def forget(conn: Connection, schema: SchemaSnapshot, object_id: int, record_ids: Iterable[int]) -> None:
    """Drop the reach rows and shared flags of deleted records (their share rows are gone)."""
    recs = sorted(set(record_ids))
    obj = _object(schema, object_id)
    for start in range(0, len(recs), _CHUNK):
        part = recs[start:start + _CHUNK]
        conn.execute(sa.delete(share_reach).where(share_reach.c.object_id == object_id,
                                                  share_reach.c.record_id.in_(part)))
        if obj is not None:
            _flag(conn, schema, obj, [], part)


def mark_shared(conn: Connection, schema: SchemaSnapshot) -> None:
    """Set every record's shared flag from ``keel_share`` (imported organisations, share rows written in bulk
    outside the share writes). Only rows whose flag is wrong are written. The recalculation does not call it:
    roles and groups moving change where shares reach, never which records have one."""
    for obj in schema.objects:
        if not obj.table:
            continue
        t = table_for(schema, obj)
        has = t.c.id.in_(sa.select(shares.c.record_id).where(shares.c.object_id == obj.id))
        conn.execute(sa.update(t).where(t.c.is_shared == sa.false(), has).values(is_shared=sa.true()))
        conn.execute(sa.update(t).where(t.c.is_shared == sa.true(), sa.not_(has)).values(is_shared=sa.false()))


def _object(schema: SchemaSnapshot, object_id: int) -> ObjectDef | None:
    by_id: dict[int, ObjectDef] = schema.cache.get("objects_by_id") or schema.cache.setdefault(
        "objects_by_id", {o.id: o for o in schema.objects})
    obj = by_id.get(object_id)
    return obj if obj is not None and obj.table else None


def _flag(conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, shared: list[int], records: list[int]) -> None:
    """``is_shared`` of ``records``: true exactly for ``shared``."""
    t = table_for(schema, obj)
    if shared:
        conn.execute(sa.update(t).where(t.c.id.in_(shared), t.c.is_shared == sa.false()).values(is_shared=sa.true()))
    rest = sorted(set(records) - set(shared))
    if rest:
        conn.execute(sa.update(t).where(t.c.id.in_(rest), t.c.is_shared == sa.true()).values(is_shared=sa.false()))
