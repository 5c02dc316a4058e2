"""Property: for random org-wide defaults, role trees, groups, sharing rules and shares, the compiled SQL predicate
and a slow, independent Python reference agree on visibility for every user × record × mode.

Each example is written with raw inserts inside one transaction that is rolled back afterwards, so hundreds of
random organisations cost milliseconds each.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keel.context import Context
from keel.metadata.model import SchemaSnapshot
from keel.metadata.tables import table_for
from keel.query import PlanCache, run_soql
from keel.security import reach
from keel.security.access import load_access
from keel.security.principals import recalculate
from keel.security.tables import shares
from keel.storage import ids
from tests.security.conftest import deploy_objects

NOW = datetime(2026, 1, 1)
USER0, ROLE0, GROUP0 = 1000, 100, 100
REGIONS = ("A", "B", "C")


@st.composite
def orgs(draw: Any) -> dict[str, Any]:
    n_roles = draw(st.integers(1, 6))
    # Mostly deep trees (the simplest draw is a chain) and mostly users with roles, so the hierarchy and what
    # managers inherit through it are exercised often.
    parents = [None] + [_or_none(i - 1 - draw(st.integers(0, i))) for i in range(1, n_roles)]
    n_users = draw(st.integers(2, 6))
    roles = [_or_none(draw(st.integers(-1, n_roles - 1))) for _ in range(n_users)]
    view_all = [draw(st.booleans()) and draw(st.booleans()) for _ in range(n_users)]
    n_groups = draw(st.integers(0, 3))
    principal = st.one_of(
        st.tuples(st.just("user"), st.integers(0, n_users - 1)),
        st.tuples(st.just("role"), st.integers(0, n_roles - 1)),
        st.tuples(st.just("rolesub"), st.integers(0, n_roles - 1)),
        *([st.tuples(st.just("group"), st.integers(0, n_groups - 1))] if n_groups else []),
    )
    groups = [draw(st.lists(principal, max_size=3)) for _ in range(n_groups)]
    queues = [g for g in range(n_groups) if draw(st.booleans())]
    # An owner is a user index, or -1 - g for queue g (a Group of type Queue owns the record).
    owner = st.one_of(st.integers(0, n_users - 1), *([st.sampled_from([-1 - g for g in queues])] if queues else []))
    n_records = draw(st.integers(1, 8))
    records = [(draw(owner), draw(st.sampled_from(REGIONS)), draw(st.integers(0, 10))) for _ in range(n_records)]
    rules = draw(st.lists(st.one_of(
        st.tuples(st.just("owner"), principal.filter(lambda p: p[0] != "user"), principal, st.integers(1, 2)),
        st.tuples(st.just("criteria"), st.sampled_from([("Region__c", "equals"), ("Region__c", "in"),
                                                        ("Region__c", "not_equals"), ("Amount__c", "greater_than")]),
                  principal, st.integers(1, 2)),
    ), max_size=3))
    grants = draw(st.lists(st.tuples(st.integers(0, n_records - 1), principal, st.integers(1, 3),
                                     st.sampled_from(["Manual", "Team"])), max_size=6))
    return {"parents": parents, "roles": roles, "view_all": view_all, "groups": groups, "queues": queues,
            "records": records, "rules": rules, "shares": _unique_shares(grants),
            "owd": draw(st.sampled_from(["private", "private", "public_read", "public_read_write"])),
            "hierarchy": draw(st.sampled_from([True, True, False])),
            "region_values": draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=2, unique=True)),
            "threshold": draw(st.integers(0, 10))}


def _or_none(n: int) -> int | None:
    return None if n < 0 else n


# -- the slow reference ------------------------------------------------------------------------------------

def reference(m: dict[str, Any]) -> dict[tuple[int, int, str], bool]:
    parents, roles = m["parents"], m["roles"]

    def ancestors(r: int) -> list[int]:
        out, cur = [], parents[r]
        while cur is not None:
            out.append(cur)
            cur = parents[cur]
        return out

    def members(p: tuple[str, int], seen: frozenset[int] = frozenset()) -> set[int]:
        kind, n = p
        if kind == "user":
            return {n}
        if kind == "role":
            return {u for u, r in enumerate(roles) if r == n}
        if kind == "rolesub":
            return {u for u, r in enumerate(roles) if r is not None and (r == n or n in ancestors(r))}
        if n in seen:
            return set()
        out: set[int] = set()
        for q in m["groups"][n]:
            out |= members(q, seen | {n})
        return out

    def matches(rec: tuple[int, str, int], crit: tuple[str, str]) -> bool:
        _, region, amount = rec
        _field, op = crit
        vals = m["region_values"]
        if op == "equals":
            return region == vals[0]
        if op == "in":
            return region in vals
        if op == "not_equals":
            return region != vals[0]
        return amount > m["threshold"]

    def above(u: int, v: int) -> bool:
        """``u``'s role is strictly above ``v``'s."""
        return roles[u] is not None and roles[v] is not None and roles[u] in ancestors(roles[v])

    def reaches(u: int, p: tuple[str, int]) -> bool:
        """A grant to ``p`` reaches ``u`` directly or, granting access using hierarchies, through anyone in a role
        below ``u``'s (Salesforce's managers inherit their subordinates' shares and rule grants)."""
        got = members(p)
        return u in got or (m["hierarchy"] and any(above(u, v) for v in got))

    out: dict[tuple[int, int, str], bool] = {}
    for u in range(len(roles)):
        for i, rec in enumerate(m["records"]):
            owner = rec[0]
            # A queue's records are owned by each of its members (and so seen by the members' managers).
            owners = members(("group", -1 - owner)) if owner < 0 else {owner}
            for mode, lvl in (("read", 1), ("edit", 2), ("delete", 3)):
                ok = (m["view_all"][u] and mode == "read") or u in owners
                ok = ok or (m["owd"] == "public_read_write" and lvl <= 2) or (m["owd"] == "public_read" and lvl == 1)
                if m["hierarchy"]:
                    ok = ok or any(above(u, v) for v in owners)
                ok = ok or any(r == i and reaches(u, p) and level >= lvl for r, p, level, _ in m["shares"])
                if lvl <= 2:
                    for kind, a, target, level in m["rules"]:
                        if level < lvl or not reaches(u, target):
                            continue
                        if (kind == "owner" and owner >= 0 and owner in members(a)) or (
                                kind == "criteria" and matches(rec, a)):
                            ok = True
                out[(u, i, mode)] = ok
    return out


# -- writing a random organisation --------------------------------------------------------------------------

def _insert(conn: sa.Connection, schema: SchemaSnapshot, obj_name: str, pk: int, values: dict[str, Any]) -> None:
    obj = schema.get_object(obj_name)
    t = table_for(schema, obj)
    row: dict[str, Any] = {"id": pk, "created_date": NOW, "last_modified_date": NOW, "system_modstamp": NOW,
                           "is_deleted": False, "owner_id": 1, "created_by_id": 1, "last_modified_by_id": 1}
    for k, v in values.items():
        f = obj.get_field(k)
        assert f.column
        row[f.column] = v
    conn.execute(sa.insert(t).values(**row))


def _public_id(p: tuple[str, int]) -> str:
    kind, n = p
    if kind == "user":
        return ids.encode("005", USER0 + n)
    if kind == "group":
        return ids.encode("00G", GROUP0 + n)
    return ids.encode("00E", ROLE0 + n)


def _principal_key(p: tuple[str, int]) -> int:
    from keel.security.principals import group_key, principal_for_id
    return principal_for_id(_public_id(p), subordinates=p[0] == "rolesub") if p[0] != "group" else \
        group_key(GROUP0 + p[1])


def write(conn: sa.Connection, schema: SchemaSnapshot, m: dict[str, Any]) -> None:
    _insert(conn, schema, "Profile", 500, {"Name": "Prop profile"})
    _insert(conn, schema, "PermissionSet", 500, {"Name": "Prop_ps", "ProfileId": 500})
    _insert(conn, schema, "PermissionSet", 501, {"Name": "Prop_view_all"})
    for ps, extra in ((500, {}), (501, {"PermissionsViewAllRecords": True})):
        _insert(conn, schema, "ObjectPermissions", ps, {"ParentId": ps, "SobjectType": "Prop__c", "PermissionsRead":
                                                        True, "PermissionsEdit": True, "PermissionsDelete": True,
                                                        **extra})
    for r, parent in enumerate(m["parents"]):
        _insert(conn, schema, "UserRole", ROLE0 + r, {"Name": f"r{r}", "ParentRoleId":
                                                      None if parent is None else ROLE0 + parent})
    for u, role in enumerate(m["roles"]):
        _insert(conn, schema, "User", USER0 + u, {"Username": f"u{u}@prop", "LastName": f"u{u}", "Email": "x@y.z",
                                                  "IsActive": True, "ProfileId": 500,
                                                  "UserRoleId": None if role is None else ROLE0 + role})
        if m["view_all"][u]:
            _insert(conn, schema, "PermissionSetAssignment", 700 + u, {"AssigneeId": USER0 + u,
                                                                       "PermissionSetId": 501})
    gm = 0
    for g, mems in enumerate(m["groups"]):
        _insert(conn, schema, "Group", GROUP0 + g, {"Name": f"g{g}", "DeveloperName": f"g{g}",
                                                    "Type": "Queue" if g in m["queues"] else "Regular"})
        for p in mems:
            gm += 1
            _insert(conn, schema, "GroupMember", 800 + gm, {"GroupId": GROUP0 + g, "UserOrGroupId": _public_id(p),
                                                            "IncludeSubordinates": p[0] == "rolesub"})
    for i, (owner, region, amount) in enumerate(m["records"]):
        _insert(conn, schema, "Prop__c", 1 + i, {"Name": f"rec{i}", "Region__c": region, "Amount__c": amount})
        conn.execute(sa.update(table_for(schema, schema.get_object("Prop__c")))
                     .where(sa.column("id") == 1 + i)
                     .values(owner_id=USER0 + owner if owner >= 0 else ids.QUEUE_OWNER + GROUP0 - 1 - owner))
    for n, (kind, a, target, level) in enumerate(m["rules"]):
        v: dict[str, Any] = {"Name": f"rule{n}", "SobjectType": "Prop__c", "TargetId": _public_id(target),
                             "TargetIncludeSubordinates": target[0] == "rolesub", "IsActive": True,
                             "AccessLevel": "Edit" if level == 2 else "Read",
                             "RuleType": "Owner" if kind == "owner" else "Criteria"}
        if kind == "owner":
            v.update(SourceId=_public_id(a), SourceIncludeSubordinates=a[0] == "rolesub")
        else:
            field, op = a
            value = str(m["threshold"]) if field == "Amount__c" else ";".join(m["region_values"])
            v.update(CriteriaField=field, CriteriaOperator=op, CriteriaValue=value)
        _insert(conn, schema, "SharingRule", 900 + n, v)
    obj = schema.get_object("Prop__c")
    seen: set[tuple[int, int, str]] = set()
    for rec, p, level, cause in m["shares"]:
        key = (rec, _principal_key(p), cause)
        if key in seen:
            continue
        seen.add(key)
        conn.execute(sa.insert(shares).values(object_id=obj.id, record_id=1 + rec, principal=key[1],
                                              access_level=level, row_cause=cause, created_date=NOW))
    recalculate(conn, schema)
    reach.mark_shared(conn, schema)  # share rows written directly: set the records' flags as share writes would


def _unique_shares(grants: list[Any]) -> list[Any]:
    """One share per (record, principal, reason), the first drawn winning, as the share table allows."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for rec, p, level, cause in grants:
        key = (rec, repr(p), cause)
        if key not in seen:
            seen.add(key)
            out.append((rec, p, level, cause))
    return out


# Always checked: a manager (u0, role r1) above a grantee (u1, r2) of a user share, a group share and a rule, on
# records whose owners are not below the manager, so only inheriting through the hierarchy shows them; with the
# hierarchy off, nothing is inherited.
INHERITS: dict[str, Any] = {
    "parents": [None, 0, 1], "roles": [1, 2, 0, None], "view_all": [False] * 4, "groups": [[("user", 1)]],
    "queues": [], "records": [(3, "A", 1), (2, "B", 2), (3, "B", 9)],
    "rules": [("criteria", ("Amount__c", "greater_than"), ("rolesub", 2), 1)],
    "shares": [(0, ("user", 1), 1, "Manual"), (1, ("group", 0), 2, "Team")], "owd": "private", "hierarchy": True,
    "region_values": ["A"], "threshold": 5}


# Always checked: groups in a cycle (g0 holds u1 and g1, g1 holds g0) both hold u1, whichever is resolved first.
CYCLE: dict[str, Any] = {
    **INHERITS, "roles": [None, None], "view_all": [False, False], "groups": [[("user", 1), ("group", 1)],
                                                                             [("group", 0)]],
    "queues": [1], "records": [(0, "A", 1), (-2, "B", 1)], "rules": [], "shares": [(0, ("group", 1), 1, "Manual")]}


# Always checked: records visible to the manager u0 through several grants at once (owned below, shared with them,
# matching a rule), which a sorted page read as streams must return once each.
OVERLAP: dict[str, Any] = {
    **INHERITS, "records": [(1, "A", 9), (1, "B", 1), (3, "A", 1), (0, "C", 1)],
    "rules": [("criteria", ("Region__c", "equals"), ("user", 0), 1)],
    "shares": [(0, ("user", 0), 1, "Manual"), (2, ("user", 0), 1, "Manual"), (3, ("role", 1), 1, "Team")]}


def test_predicate_matches_reference(org: Context, tmp_path: Path) -> None:
    deploy_objects(org, [{"object": "Prop__c", "sharing": "private", "name_field": {"type": "text"}, "fields": [
        {"name": "Region__c", "type": "text", "length": 5}, {"name": "Amount__c", "type": "number"}]}], tmp_path)
    with org.db.read() as conn:
        schema = org.schema(conn)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
    @given(orgs())
    @example(INHERITS)
    @example({**INHERITS, "hierarchy": False})
    @example(CYCLE)
    @example(OVERLAP)
    def check(m: dict[str, Any]) -> None:
        expected = reference(m)
        obj = replace(schema.get_object("Prop__c"), sharing=m["owd"], role_hierarchy=m["hierarchy"])
        t = table_for(schema, obj)
        with org.db.engine.connect() as conn:
            tx = conn.begin()
            try:
                write(conn, schema, m)
                for u in range(len(m["roles"])):
                    # Subordinates' ids embedded in the statement (the default), and read from the closure
                    # table in the statement (what a manager over more than OWNER_LIST_MAX users gets).
                    for owner_list_max in (1000, 0):
                        access = load_access(conn, schema, USER0 + u, owner_list_max=owner_list_max)
                        for mode in ("read", "edit", "delete"):
                            pred = access.record_filter(obj, t, mode)
                            q = sa.select(t.c.id)
                            got = {int(x) - 1 for x in
                                   conn.execute(q.where(pred) if pred is not None else q).scalars()}
                            want = {i for i in range(len(m["records"])) if expected[(u, i, mode)]}
                            assert got == want, (u, mode, owner_list_max, m)
                    if (m["owd"], m["hierarchy"]) == ("private", True):  # the deployed definition: SOQL reads it
                        merged[0] += check_pages(conn, schema, USER0 + u, {
                            i for i in range(len(m["records"])) if expected[(u, i, "read")]})
            finally:
                tx.rollback()

    merged = [0]
    check()
    assert merged[0] > 0, "no example read a sorted page as a merge of streams"


def check_pages(conn: sa.Connection, schema: SchemaSnapshot, user: int, want: set[int]) -> int:
    """Sorted pages of the user's records equal the reference's, whichever plan reads them: a merge of streams
    (managers at depths 1..4, ``query/arms.py``) or one filtered walk. Returns how many pages were merges."""
    access = load_access(conn, schema, user)
    names = sorted(f"rec{i}" for i in want)
    merges = 0
    cache = PlanCache()
    for order, expect in (("Name", names), ("Name DESC", names[::-1]), ("Name ASC NULLS FIRST, Id", names)):
        for limit in (1, 2, 50):
            soql = f"SELECT Name FROM Prop__c ORDER BY {order} LIMIT {limit}"
            got = run_soql(conn, schema, soql, dialect=conn.dialect.name, row_filter=access.row_filter,
                           security_key=access.security_key, cache=cache)
            assert [r["Name"] for r in got["records"]] == expect[:limit], (soql, user)
            merges += cache.get(soql, schema, dialect=conn.dialect.name, security_key=access.security_key,
                                row_filter=access.row_filter).plan.merge is not None
    return merges
