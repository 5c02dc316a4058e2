"""Record visibility compiled into one SQL predicate per (user, object, mode).

The predicate is a disjunction of grants, each an indexed probe:
  owner_id = :me
  ∪ owner_id IN (members of the roles directly below mine, and their subordinates)  -- role hierarchy
  ∪ EXISTS (share row for this record whose principal is one of mine,                -- manual/programmatic
            or reaching a role below mine: one range of keel_share_reach)
  ∪ owner_id IN (members of the rule's source)                                        -- owner-based rules
  ∪ <field op value>                                                                  -- criteria-based rules
Controlled-by-parent objects get ``EXISTS (master row visible by the master's predicate)``. Bypass permissions
(View/Modify All, View/Modify All Data) and public OWDs yield ``None``: every row.

Sharing rules are evaluated at query time rather than materialised as share rows, so a record save never has
to recompute shares and a rule change costs nothing but a version bump. Criteria are a simple
(field, operator, values) filter compiled with SQLAlchemy; ``security/`` cannot import the formula engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, FromClause
from sqlalchemy.engine import Connection

from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import LINEAGE_DEPTHS, table_for
from keel.metadata.types import TYPES
from keel.security.principals import col, live, principal_for_id
from keel.security.tables import principal_members, share_reach, shares
from keel.storage.streams import Streams, mark

if TYPE_CHECKING:
    from keel.security.access import UserAccess

READ, EDIT, ALL = 1, 2, 3
MODES = {"read": READ, "edit": EDIT, "delete": ALL}
OPERATORS = ("equals", "not_equals", "in", "not_in", "greater_than", "less_than", "greater_or_equal",
             "less_or_equal", "starts_with")


@dataclass(frozen=True, slots=True)
class SharingRule:
    object_key: str
    kind: str  # owner | criteria
    access: int  # READ or EDIT
    source: int | None = None
    target: int = 0  # the grantee: a group, role or role-and-subordinates principal
    field: str | None = None
    op: str | None = None
    values: tuple[str, ...] = ()


def load_rules(conn: Connection, schema: SchemaSnapshot,
               principals: frozenset[int]) -> dict[str, tuple[SharingRule, ...]]:
    """Active sharing rules whose target is one of ``principals``, grouped by object key."""
    t = live(schema, "SharingRule")
    names = ("SobjectType", "RuleType", "SourceId", "SourceIncludeSubordinates", "CriteriaField", "CriteriaOperator",
             "CriteriaValue", "TargetId", "TargetIncludeSubordinates", "AccessLevel")
    q = sa.select(*[col(schema, "SharingRule", n) for n in names]).where(
        t.c.is_deleted == sa.false(), col(schema, "SharingRule", "IsActive") == sa.true())
    out: dict[str, list[SharingRule]] = {}
    for r in conn.execute(q):
        d = dict(zip(names, r, strict=True))
        try:
            target = principal_for_id(str(d["TargetId"]), subordinates=bool(d["TargetIncludeSubordinates"]))
        except KeelError:
            continue
        if target not in principals:
            continue
        access = EDIT if d["AccessLevel"] == "Edit" else READ
        okey = str(d["SobjectType"]).lower()
        if d["RuleType"] == "Owner":
            if not d["SourceId"]:
                continue
            try:
                source = principal_for_id(str(d["SourceId"]), subordinates=bool(d["SourceIncludeSubordinates"]))
            except KeelError:
                continue
            rule = SharingRule(okey, "owner", access, source=source, target=target)
        else:
            if not d["CriteriaField"] or d["CriteriaOperator"] not in OPERATORS:
                continue
            values = tuple(v.strip() for v in str(d["CriteriaValue"] or "").split(";"))
            rule = SharingRule(okey, "criteria", access, target=target, field=str(d["CriteriaField"]),
                               op=str(d["CriteriaOperator"]), values=values)
        out.setdefault(okey, []).append(rule)
    return {k: tuple(v) for k, v in out.items()}


def parse_value(f: FieldDef, raw: str) -> Any:
    """A criterion value as the column's Python type."""
    storage = TYPES[f.type].storage if f.type in TYPES else "text"
    if storage == "number":
        return float(raw)
    if storage == "boolean":
        return raw.lower() in ("true", "1", "yes")
    if storage == "date":
        return date.fromisoformat(raw)
    if storage == "datetime":
        return datetime.fromisoformat(raw)
    return raw


def criterion(obj: ObjectDef, table: FromClause, rule: SharingRule) -> ColumnElement[bool] | None:
    f = obj.find_field(rule.field or "")
    if f is None or not f.column or rule.op is None:
        return None
    c = table.c[f.column]
    try:
        vals = [parse_value(f, v) for v in rule.values]
    except ValueError:
        return None
    if not vals:
        return None
    v = vals[0]
    ops: dict[str, Callable[[], ColumnElement[bool]]] = {
        "equals": lambda: c == v,
        "not_equals": lambda: sa.or_(c != v, c.is_(None)),
        "in": lambda: _in(c, vals),
        "not_in": lambda: sa.or_(sa.not_(_in(c, vals)), c.is_(None)),
        "greater_than": lambda: c > v,
        "less_than": lambda: c < v,
        "greater_or_equal": lambda: c >= v,
        "less_or_equal": lambda: c <= v,
        "starts_with": lambda: c.startswith(str(v), autoescape=True),
    }
    make = ops.get(rule.op)
    return make() if make is not None else None


def _in(column: sa.ColumnElement[Any], values: Any) -> ColumnElement[bool]:
    """``column IN (…)`` with one ordinary bound parameter per value, not an "expanding" parameter, so the
    predicate renders once without values (the SOQL plan cache renders statements ahead of execution)."""
    return column.in_([sa.literal(v) for v in values])


def _ints(values: Any) -> list[ColumnElement[Any]]:
    """Integers (user pks, principals, object ids: never user text) rendered into the statement rather than bound.

    The predicate is built per (user, security version), and so are the plans that embed it. A manager's list may
    hold hundreds of owner ids; binding each costs the SOQL runner a conversion per parameter per execution, which
    for a 50-row page weighed more than the query (0.3 us x 216 ids)."""
    return [sa.literal_column(str(int(v)), sa.BigInteger()) for v in values]


def _int(value: int) -> ColumnElement[Any]:
    return _ints((value,))[0]


def _shared(access: UserAccess, obj: ObjectDef, table: FromClause, level: int,
            by_record: bool) -> ColumnElement[bool]:
    """Records shared with any of my principals, or (granting access using hierarchies) with anyone below me.

    ``by_record``: each record's ``is_shared`` flag comes first, and only records that have a share probe
    ``keel_share`` and ``keel_share_reach`` by record. That suits a walk in sort order that tests each entry: a
    dense user's lists (``UserAccess.dense``), and the shared-records stream of a merged page, which walks the
    index of flagged records; building the whole share list (hundreds of ids into a temporary index) cost more
    than the rest of a 50-row page. Otherwise: an uncorrelated list built once per statement from the
    (principal, object_id) index, which the planner can also drive from.
    """
    obj_id = _int(obj.id)
    lo_hi = access.span if obj.role_hierarchy else None
    if by_record:
        direct_c = [shares.c.object_id == obj_id, shares.c.record_id == table.c.id,
                    shares.c.principal.in_(_ints(sorted(access.principals)))]
        if level > READ:
            direct_c.append(shares.c.access_level >= _int(level))
        probes: list[ColumnElement[bool]] = [_probe(access, direct_c)]
        if lo_hi is not None:
            reach_c = [share_reach.c.object_id == obj_id, share_reach.c.record_id == table.c.id,
                       share_reach.c.pos > _int(lo_hi[0]), share_reach.c.pos <= _int(lo_hi[1])]
            if level > READ:
                reach_c.append(share_reach.c.access_level >= _int(level))
            probes.append(_probe(access, reach_c))
        return sa.and_(table.c.is_shared == sa.true(), sa.or_(*probes))
    direct = sa.select(shares.c.record_id).where(shares.c.object_id == obj_id,
                                                 shares.c.principal.in_(_ints(sorted(access.principals))))
    if level > READ:
        direct = direct.where(shares.c.access_level >= _int(level))
    shared: sa.Select[Any] | sa.CompoundSelect[Any] = direct
    if lo_hi is not None:
        # Shares reaching any role below mine: one range of one index (``security/reach.py``), added to the same
        # list so each row still costs one probe.
        inherited = sa.select(share_reach.c.record_id).where(
            share_reach.c.object_id == obj_id, share_reach.c.pos > _int(lo_hi[0]), share_reach.c.pos <= _int(lo_hi[1]))
        if level > READ:
            inherited = inherited.where(share_reach.c.access_level >= _int(level))
        shared = sa.union_all(direct, inherited)
    return table.c.id.in_(shared)


def _probe(access: UserAccess, conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """``EXISTS`` a row matching ``conds``, probed by index for each record tested. PostgreSQL would otherwise
    turn the correlated EXISTS into a hash of every matching share row, built on every execution (the ~630 rows
    a manager inherits, to test the handful of flagged records a page walks); ``OFFSET 0`` keeps it a probe."""
    q = sa.select(sa.literal(1)).where(*conds)
    return sa.exists(q.offset(0) if access.dialect == "postgresql" else q)


def master_field(obj: ObjectDef) -> FieldDef | None:
    return next((f for f in obj.fields if f.type == "master_detail"), None)


def visibility(access: UserAccess, obj: ObjectDef, table: FromClause, mode: str) -> ColumnElement[bool] | None:
    """The predicate for ``mode`` (read | edit | delete) on ``table`` (an alias of ``obj``'s table); None = all."""
    if mode == "read" and not access.can(obj.api_name, "read"):
        return sa.false()  # no object Read: no rows, also through parent paths and lookups (S1)
    if access.bypasses(obj, mode):
        return None
    schema = access.schema
    if obj.sharing == "controlled_by_parent":
        md = master_field(obj)
        parent = schema.find_object(md.reference_to[0]) if md is not None else None
        if md is not None and parent is not None and md.column:
            # Editing or deleting a detail needs edit access to the master, as in Salesforce.
            p = table_for(schema, parent).alias()
            inner = visibility(access, parent, p, "read" if mode == "read" else "edit")
            if inner is None:
                return None
            return sa.exists(sa.select(sa.literal(1)).where(p.c.id == table.c[md.column], inner))
    level = MODES.get(mode, ALL)
    if (obj.sharing == "public_read_write" and level <= EDIT) or (obj.sharing == "public_read" and level == READ):
        return None
    owner = table.c.owner_id
    grants: list[ColumnElement[bool]] = []
    below = access.owners_below if obj.role_hierarchy and access.subordinate_keys else ()
    if below and access.dialect != "sqlite":
        below = None
    # Records owned by my queues, and (through the hierarchy) by queues with a member below me, are owned by me.
    mine = {access.user_pk, *access.queues, *(access.queues_below if obj.role_hierarchy else ())}
    lead = _band(access, obj, table)
    if lead is not None:  # my records and my subordinates': one column test, one index in Name order
        grants.append(lead)
        if len(mine) > 1:
            grants.append(owner.in_(_ints(sorted(mine - {access.user_pk}))))
    elif below is None:  # too many to list (or not SQLite): read them from the closure in the statement
        grants.append(owner.in_(_ints(sorted(mine))) if len(mine) > 1 else owner == _int(access.user_pk))
        grants.append(owner.in_(sa.select(principal_members.c.user_id)
                                .where(principal_members.c.principal.in_(_ints(access.subordinate_keys)))))
    elif below or len(mine) > 1:
        # Mine and my subordinates' records: one probe of one list per row a sorted list walks past.
        grants.append(owner.in_(_ints(sorted({*mine, *below}))))
    else:
        grants.append(owner == _int(access.user_pk))
    share_at = len(grants)
    grants.append(_shared(access, obj, table, level, access.dense))
    hierarchy = obj.role_hierarchy and bool(access.subordinate_keys)
    if level <= EDIT:
        for rule in access.rules.get(obj.key, ()):
            if rule.access < level or (rule.target not in access.principals and not hierarchy):
                continue
            if rule.kind == "owner" and rule.source is not None:
                grants.append(owner.in_(sa.select(principal_members.c.user_id)
                                        .where(principal_members.c.principal == rule.source)))
            elif rule.kind == "criteria":
                expr = criterion(obj, table, rule)
                if expr is not None:
                    grants.append(expr)
    name = obj.find_field("Name")
    if lead is None or name is None or not name.column or name.column not in table.c:
        return sa.or_(*grants)
    nullable = not (name.required or name.type == "auto_number")
    # Read as a stream, shared records are walked in Name order through the index of flagged records, testing
    # each: the walk ends at the lead stream's last row on the page, so it is short whatever the user's shares.
    others = [*grants[1:share_at], _shared(access, obj, table, level, True), *grants[share_at + 1:]]
    return mark(sa.or_(*grants), Streams(lead, tuple(others), table.c[name.column], nullable))


def _band(access: UserAccess, obj: ObjectDef, table: FromClause) -> ColumnElement[bool] | None:
    """Mine and my subordinates' records as ``role_<d> = my role AND (role_depth > d OR owner = me)``, for a
    manager whose role sits at depth 1..4 (``security/lineage.py``); None where the owner list stays."""
    d, role = access.role_depth, access.role_pk
    if not obj.role_hierarchy or not access.subordinate_keys or d is None or role is None \
            or not 1 <= d <= LINEAGE_DEPTHS or "role_depth" not in table.c:
        return None
    return sa.and_(table.c[f"role_{d}"] == _int(role),
                   sa.or_(table.c.role_depth > _int(d), table.c.owner_id == _int(access.user_pk)))
