"""Each record carries its owner's place in the role hierarchy, so "owned by someone below me" is one column.

A manager sees the records of every active user below their role. Tested per row as "owner in this list of 115
users", a list sorted by Name walks ~50 / (visible fraction) entries of the Name index and probes the list for
each: at 5.8% visible that is ~880 entries for a 50-row page, twice the unshared query. Instead every record
stores the depth of its owner's role (``role_depth``) and the role's ancestor at each depth 1..4 (``role_1`` ..
``role_4``, the role itself at its own depth), so for a manager whose role R is at depth d:

    owned by someone strictly below R  ==  role_<d> = R AND role_depth > d

and a partial index on ``(role_<d>, Name)`` yields exactly those records in name order (``metadata.tables.
lineage_specs``; the merge with shared records is ``query/arms.py``).

The values are derived data, like ``keel_share_reach``: ``keel_owner_lineage`` holds each active user's lineage;
saves stamp the records they insert or re-own from it (``records/write.py``), and the recalculation that follows
every change to roles or users diffs it and rewrites the records of exactly the users whose lineage changed, in
the same transaction. Inactive users and users without a role have none, as they have no place in the
hierarchy's closures either. Managers deeper than 4 levels keep the owner-list predicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import SchemaSnapshot
from keel.metadata.tables import LINEAGE_COLUMNS, LINEAGE_DEPTHS, table_for
from keel.security.tables import owner_lineage

Lineage = tuple[int | None, ...]  # (role_depth, role_1, .., role_4): the record columns, in LINEAGE_COLUMNS order
NONE: Lineage = (None,) * len(LINEAGE_COLUMNS)
_CHUNK = 500


def of_role(parents: Mapping[int, int | None], role: int) -> Lineage:
    """The lineage of a user in ``role``: its depth and its ancestors from depth 1 (the root's children) down."""
    path: list[int] = []
    seen: set[int] = set()
    cur: int | None = role
    while cur is not None and cur not in seen:  # a cycle is refused before any recalculation; stop regardless
        seen.add(cur)
        path.append(cur)
        parent = parents.get(cur)
        cur = parent if parent in parents else None
    path.reverse()  # root first: path[d] is the ancestor at depth d
    depth = len(path) - 1
    return (depth, *(path[d] if d <= depth else None for d in range(1, LINEAGE_DEPTHS + 1)))


def compute(parents: Mapping[int, int | None], user_roles: Mapping[int, int | None]) -> dict[int, Lineage]:
    """Every active user (``user_roles``: user pk -> role pk or None) and their lineage; ``NONE`` without a role.

    Role-less users get a row too, so that giving one a role changes a row a concurrent save may hold (``sync``)."""
    by_role: dict[int, Lineage] = {}
    out: dict[int, Lineage] = {}
    for user, role in user_roles.items():
        if role is None or role not in parents:
            out[user] = NONE
            continue
        hit = by_role.get(role)
        if hit is None:
            hit = by_role[role] = of_role(parents, role)
        out[user] = hit
    return out


def stored(conn: Connection) -> dict[int, Lineage]:
    cols = [owner_lineage.c[c] for c in LINEAGE_COLUMNS]
    return {int(r[0]): tuple(None if v is None else int(v) for v in r[1:])
            for r in conn.execute(sa.select(owner_lineage.c.user_id, *cols))}


_SELECT = f"SELECT user_id, {', '.join(LINEAGE_COLUMNS)} FROM {owner_lineage.name} WHERE user_id IN "


def of_owners(conn: Connection, owners: Iterable[int], *, lock: bool = True) -> dict[int, Lineage]:
    """The lineage of each of ``owners`` that has one (queues, inactive and role-less users have none).

    Every save runs this, so it goes straight to the driver. On PostgreSQL the rows are read ``FOR SHARE``, held
    until the save commits: a recalculation changing one of them (``sync`` updates rows in place) waits for the
    save, and then its restamp sees and rewrites what the save wrote; a save reading a row a recalculation has
    changed waits for it and reads the new value. Either way no record keeps a lineage its owner no longer has.
    SQLite has one writer at a time, so there the question does not arise. ``lock=False`` for reads that stamp
    nothing (a user's own depth, read with their access)."""
    wanted = sorted(set(owners))
    if not wanted:
        return {}
    pg = conn.dialect.name == "postgresql"
    raw = conn.connection.driver_connection
    assert raw is not None
    out: dict[int, Lineage] = {}
    cur = raw.cursor()
    try:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ", ".join(["%s" if pg else "?"] * len(chunk))
            cur.execute(f"{_SELECT}({marks}){' FOR SHARE' if pg and lock else ''}", chunk)
            out.update((int(r[0]), tuple(r[1:])) for r in cur.fetchall() if r[1] is not None)
    finally:
        cur.close()
    return out


def sync(conn: Connection, schema: SchemaSnapshot, new: Mapping[int, Lineage]) -> int:
    """Make ``keel_owner_lineage`` equal ``new`` and restamp the records of every user whose lineage changed.

    Returns the number of users whose records were restamped. Moving a role rewrites the records of the users in
    its subtree, once per object, grouped by lineage so each distinct lineage is one UPDATE per object."""
    old = stored(conn)
    # Rows change in place, and only those that change: a save holding one FOR SHARE (``of_owners``) makes this
    # wait, and rows nobody changes lock nothing, so recalculations for groups or rules never wait on saves.
    gone = sorted(set(old) - set(new))
    for start in range(0, len(gone), _CHUNK):
        conn.execute(sa.delete(owner_lineage).where(owner_lineage.c.user_id.in_(gone[start:start + _CHUNK])))
    moved = [{"b_user": u, **dict(zip(LINEAGE_COLUMNS, v, strict=True))} for u, v in sorted(new.items())
             if u in old and old[u] != v]
    if moved:
        conn.execute(sa.update(owner_lineage).where(owner_lineage.c.user_id == sa.bindparam("b_user"))
                     .values({c: sa.bindparam(c) for c in LINEAGE_COLUMNS}), moved)
    rows = [{"user_id": u, **dict(zip(LINEAGE_COLUMNS, v, strict=True))} for u, v in sorted(new.items())
            if u not in old]
    for start in range(0, len(rows), 5000):
        conn.execute(sa.insert(owner_lineage), rows[start:start + 5000])
    changed: dict[Lineage, list[int]] = {}
    for user in set(old) | set(new):
        value = new.get(user, NONE)
        if old.get(user, NONE) != value:
            changed.setdefault(value, []).append(user)
    for value, group in changed.items():
        restamp(conn, schema, value, sorted(group))
    return sum(len(g) for g in changed.values())


def restamp(conn: Connection, schema: SchemaSnapshot, value: Lineage, owners: list[int]) -> None:
    """Write ``value`` onto every record of every object owned by one of ``owners``."""
    values: dict[str, Any] = dict(zip(LINEAGE_COLUMNS, value, strict=True))
    for obj in schema.objects:
        t = table_for(schema, obj)
        if "role_depth" not in t.c:
            continue
        for start in range(0, len(owners), _CHUNK):
            conn.execute(sa.update(t).where(t.c.owner_id.in_(owners[start:start + _CHUNK])).values(values))


def restamp_all(conn: Connection, schema: SchemaSnapshot) -> None:
    """Stamp every record from ``keel_owner_lineage`` (after loading records that bypassed the save path)."""
    for obj in schema.objects:
        t = table_for(schema, obj)
        if "role_depth" not in t.c:
            continue
        src = owner_lineage.alias("l")
        values: dict[str, Any] = {c: sa.select(src.c[c]).where(src.c.user_id == t.c.owner_id).scalar_subquery()
                                  for c in LINEAGE_COLUMNS}
        conn.execute(sa.update(t).values(values))
