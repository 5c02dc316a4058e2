"""Principals (users, groups, roles, roles-and-subordinates) and the recalculation of their closure tables.

Every grantee is one integer: a user is its pk; a group, role or role-and-subordinates is its pk tagged in bits
40+. A user's principal set ("me, my role, every role-and-subordinates above me, every group I'm in") is small and
read once per request, so the visibility predicate is ``share.principal IN (:keys)`` against an index.

The closures (``keel_role_closure``, ``keel_principal_member``) are derived data. They are rebuilt in full by
``recalculate`` inside the caller's transaction, so a change to roles, users or groups is visible atomically,
never half-applied. A full rebuild of 200 roles / 2,000 users is a few thousand rows, which is cheaper to
reason about than incremental maintenance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import KeelError
from keel.metadata.model import SchemaSnapshot
from keel.metadata.tables import table_for
from keel.security.tables import principal_members, role_closure
from keel.storage import ids

GROUP = 1 << 40
ROLE = 2 << 40
ROLE_SUB = 3 << 40
KIND_MASK = _KIND_MASK = ~((1 << 40) - 1)  # principal & KIND_MASK: 0 for a user, else GROUP / ROLE / ROLE_SUB

Progress = Callable[[str, int, int], None]


def group_key(pk: int) -> int:
    return GROUP | pk


def role_key(pk: int, *, subordinates: bool = False) -> int:
    return (ROLE_SUB if subordinates else ROLE) | pk


def principal_for_id(public_id: str, *, subordinates: bool = False) -> int:
    """The principal of a User (005), Group (00G) or UserRole (00E) id."""
    prefix, n = ids.split(public_id.strip())
    if prefix == "005":
        return n
    if prefix == "00G":
        return group_key(n)
    if prefix == "00E":
        return role_key(n, subordinates=subordinates)
    raise KeelError(f"{public_id} is not the id of a user, group or role.", code="INVALID_CROSS_REFERENCE_KEY")


def col(schema: SchemaSnapshot, obj_name: str, field: str) -> sa.ColumnElement[Any]:
    obj = schema.get_object(obj_name)
    f = obj.get_field(field)
    assert f.column
    return table_for(schema, obj).c[f.column]


def live(schema: SchemaSnapshot, obj_name: str) -> sa.Table:
    return table_for(schema, schema.get_object(obj_name))


@dataclass(frozen=True, slots=True)
class RecalcResult:
    roles: int
    users: int
    groups: int
    member_rows: int


def load_role_parents(conn: Connection, schema: SchemaSnapshot) -> dict[int, int | None]:
    t = live(schema, "UserRole")
    parent = col(schema, "UserRole", "ParentRoleId")
    return {int(r[0]): (int(r[1]) if r[1] is not None else None)
            for r in conn.execute(sa.select(t.c.id, parent).where(t.c.is_deleted == sa.false()))}


def ancestors(parents: dict[int, int | None], role: int) -> list[int]:
    """``role`` then its parent, grandparent …; a cycle (which the hooks reject) stops the walk."""
    out = [role]
    seen = {role}
    cur = parents.get(role)
    while cur is not None and cur not in seen and cur in parents:
        out.append(cur)
        seen.add(cur)
        cur = parents.get(cur)
    return out


def has_cycle(parents: dict[int, int | None]) -> int | None:
    for role in parents:
        seen = {role}
        cur = parents.get(role)
        while cur is not None:
            if cur in seen:
                return role
            seen.add(cur)
            cur = parents.get(cur)
    return None


def recalculate(conn: Connection, schema: SchemaSnapshot, progress: Progress | None = None) -> RecalcResult:
    """Rebuild the role closure and every principal's member list, in the caller's transaction."""
    report = progress or (lambda _step, _done, _total: None)
    parents = load_role_parents(conn, schema)
    bad = has_cycle(parents)
    if bad is not None:
        raise KeelError(f"Role {ids.encode('00E', bad)} would be its own ancestor.", code="CIRCULAR_DEPENDENCY")
    report("roles", 0, len(parents))
    closure = []
    for role in parents:
        for depth, anc in enumerate(ancestors(parents, role)):
            closure.append({"ancestor_id": anc, "role_id": role, "depth": depth})
    conn.execute(sa.delete(role_closure))
    _insert(conn, role_closure, closure)
    report("roles", len(parents), len(parents))

    ut = live(schema, "User")
    urole, active = col(schema, "User", "UserRoleId"), col(schema, "User", "IsActive")
    users_by_role: dict[int, set[int]] = {}
    users: set[int] = set()
    for pk, role in conn.execute(sa.select(ut.c.id, urole).where(ut.c.is_deleted == sa.false(), active == sa.true())):
        users.add(int(pk))
        if role is not None:
            users_by_role.setdefault(int(role), set()).add(int(pk))
    members: dict[int, set[int]] = {}
    for role in parents:
        members[role_key(role)] = set(users_by_role.get(role, ()))
    for row in closure:
        members.setdefault(role_key(row["ancestor_id"], subordinates=True), set()).update(
            users_by_role.get(row["role_id"], ()))

    groups = _load_groups(conn, schema)
    report("groups", 0, len(groups))

    def resolve(g: int) -> set[int]:
        """Everyone in ``g`` and in every group reachable from it. A walk per group, not a memo: inside a cycle
        (g1 holds g2, g2 holds g1) a memoised partial answer would leave g2 without g1's members."""
        out: set[int] = set()
        seen, todo = {g}, [g]
        while todo:
            for member in groups.get(todo.pop(), ()):
                kind = member & _KIND_MASK
                if kind == 0:
                    if member in users:
                        out.add(member)
                elif kind == GROUP:
                    if member not in seen:
                        seen.add(member)
                        todo.append(member)
                else:
                    out |= members.get(member, set())
        return out

    for n, g in enumerate(groups, 1):
        members[g] = resolve(g)
        if n % 100 == 0:
            report("groups", n, len(groups))
    report("groups", len(groups), len(groups))
    rows = [{"principal": p, "user_id": u} for p, us in members.items() for u in us]
    conn.execute(sa.delete(principal_members))
    _insert(conn, principal_members, rows)
    report("members", len(rows), len(rows))
    # Where shares reach in the (possibly renumbered) role tree, for managers' inherited access, and where each
    # owner sits in it, for the hierarchy test on their records.
    from keel.security import lineage, reach  # both read the closures this module writes
    report("lineage", 0, 1)
    roles_of: dict[int, int | None] = dict.fromkeys(users)
    roles_of.update((u, role) for role, us in users_by_role.items() for u in us)
    restamped = lineage.sync(conn, schema, lineage.compute(parents, roles_of))
    report("lineage", restamped, restamped)
    reach.write_spans(conn, reach.spans(parents))
    report("shares", 0, 1)
    reached = reach.rebuild(conn, schema)
    report("shares", reached, reached)
    return RecalcResult(len(parents), len(users), len(groups), len(rows))


def _load_groups(conn: Connection, schema: SchemaSnapshot) -> dict[int, list[int]]:
    gt = live(schema, "Group")
    out: dict[int, list[int]] = {group_key(int(pk)): [] for pk in
                                 conn.execute(sa.select(gt.c.id).where(gt.c.is_deleted == sa.false())).scalars()}
    mt = live(schema, "GroupMember")
    gid = col(schema, "GroupMember", "GroupId")
    member = col(schema, "GroupMember", "UserOrGroupId")
    subs = col(schema, "GroupMember", "IncludeSubordinates")
    for g, m, s in conn.execute(sa.select(gid, member, subs).where(mt.c.is_deleted == sa.false())):
        key = group_key(int(g))
        if key not in out or not m:
            continue
        try:
            out[key].append(principal_for_id(str(m), subordinates=bool(s)))
        except KeelError:
            continue
    return out


def _insert(conn: Connection, table: sa.Table, rows: list[dict[str, int]]) -> None:
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(table), rows[start:start + 5000])


def user_principals(conn: Connection, user_pk: int) -> frozenset[int]:
    """Every principal ``user_pk`` acts as: itself plus each group, role and role-and-subordinates containing it."""
    keys = set(conn.execute(sa.select(principal_members.c.principal)
                            .where(principal_members.c.user_id == user_pk)).scalars())
    keys.add(user_pk)
    return frozenset(int(k) for k in keys)


def subordinate_role_keys(conn: Connection, role_pk: int | None) -> tuple[int, ...]:
    """Role-and-subordinates keys of the roles directly below ``role_pk``: their members' records are visible
    through the hierarchy (peers in the same role are not)."""
    if role_pk is None:
        return ()
    q = sa.select(role_closure.c.role_id).where(role_closure.c.ancestor_id == role_pk, role_closure.c.depth == 1)
    return tuple(sorted(role_key(int(r), subordinates=True) for r in conn.execute(q).scalars()))


def inherited_principals(conn: Connection, subordinate_keys: tuple[int, ...]) -> frozenset[int]:
    """The users below in the role hierarchy and every group and role that contains one of them.

    With "grant access using hierarchies", a manager gets whatever a subordinate is granted by a sharing rule, as
    in Salesforce, so a rule to a user below me, or to a group or role holding one, reaches me. Rules are few and
    evaluated in the predicate, so this costs two queries per access, nothing per row."""
    if not subordinate_keys:
        return frozenset()
    below = sa.select(principal_members.c.user_id).where(principal_members.c.principal.in_(subordinate_keys))
    users = {int(u) for u in conn.execute(below.distinct()).scalars()}
    pm = principal_members.alias()
    q = sa.select(pm.c.principal).where(pm.c.user_id.in_(below)).distinct()
    return frozenset(users | {int(p) for p in conn.execute(q).scalars() if int(p) & _KIND_MASK})


def iter_ids(rows: Iterable[object]) -> list[int]:
    return [int(r) for r in rows]  # type: ignore[call-overload]
