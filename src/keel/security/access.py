"""The ``Access`` of one user, built once per request from permission data, and its cache.

Everything is read in a handful of queries (user, permission sets, object and field permissions, principals,
sharing rules) and frozen into a ``UserAccess``. The cache key includes the ``security_version`` meta counter,
which every change to permission data bumps in the same transaction, so the very next request after a revoke sees
the new rights: there is no TTL to wait out (ASVS 5.0 8.3.2).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import ColumnElement, FromClause
from sqlalchemy.engine import Connection

from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.security import lineage
from keel.security.predicate import SharingRule, load_rules, visibility
from keel.security.principals import col, inherited_principals, live, subordinate_role_keys, user_principals
from keel.security.queues import owning_queues
from keel.security.reach import role_span
from keel.security.shareobj import share_shape
from keel.security.tables import principal_members
from keel.storage import system as S

SYSTEM_PERMISSIONS = ("ModifyAllData", "ViewAllData", "ManageUsers", "CustomizeApplication", "ApiEnabled",
                      "ExportReport", "ViewSetup", "ForceTwoFactor")
OBJECT_ACTIONS = {"read": "PermissionsRead", "create": "PermissionsCreate", "edit": "PermissionsEdit",
                  "delete": "PermissionsDelete", "view_all": "PermissionsViewAllRecords",
                  "modify_all": "PermissionsModifyAllRecords"}
# Setup objects readable by every user, as in Salesforce (names and roles of colleagues).
PUBLIC_SETUP = frozenset({"user", "profile", "userrole", "group", "recordtype"})
USER_ADMIN_OBJECTS = frozenset({"user", "permissionsetassignment", "userrole", "group", "groupmember",
                                "queuesobject"})
CUSTOMIZE_OBJECTS = frozenset({"profile", "permissionset", "permissionsetgroup", "permissionsetgroupcomponent",
                               "objectpermissions", "fieldpermissions", "sharingrule"})
SETUP_OBJECTS = PUBLIC_SETUP | USER_ADMIN_OBJECTS | CUSTOMIZE_OBJECTS
SECURITY_VERSION = "security_version"
# Up to this many users below a manager are embedded in the predicate as one list of owner ids; beyond it the
# predicate reads them from the closure table in the statement (a CEO over 50,000 users).
OWNER_LIST_MAX = 1000


def security_version(conn: Connection) -> int:
    return int(S.get_meta(conn, SECURITY_VERSION) or 0)


def bump_security_version(conn: Connection) -> None:
    """Called in the transaction that changes permission data; cached ``Access`` objects become stale at commit."""
    updated = conn.execute(sa.update(S.meta).where(S.meta.c.key == SECURITY_VERSION).values(
        value=sa.cast(sa.cast(S.meta.c.value, sa.Integer) + 1, sa.Text))).rowcount
    if not updated:
        conn.execute(sa.insert(S.meta).values(key=SECURITY_VERSION, value="1"))


@dataclass
class UserAccess:
    """What one user may do at one security version. Implements ``keel.context.Access``."""

    schema: SchemaSnapshot
    user_pk: int
    role_pk: int | None
    profile_pk: int | None
    system: frozenset[str]
    objects: dict[str, frozenset[str]]  # object key -> granted actions
    fields: dict[tuple[str, str], tuple[bool, bool]]  # (object key, field key) -> (read, edit)
    principals: frozenset[int]
    subordinate_keys: tuple[int, ...]
    rules: dict[str, tuple[SharingRule, ...]]  # object key -> rules whose target includes this user or one below
    dense: bool = False  # sees the records of >= 2% of users: lists should scan in order, not union indexes
    # Active users below this user in the role hierarchy, or None when more than OWNER_LIST_MAX. Read with the
    # principals, so the security version that invalidates them also invalidates this list.
    owners_below: tuple[int, ...] | None = ()
    # The database the access was read from: the owner list pays off on SQLite, whose IN list is a probe of an
    # in-memory b-tree; PostgreSQL's hashed subplan over the closure measured faster than a literal list there.
    dialect: str = "sqlite"
    # Owner keys (``ids.QUEUE_OWNER`` + Group pk) of the queues this user is a member of: their records are owned
    # by the user for visibility. ``queues_below``: queues with a member below this user in the role hierarchy,
    # whose records the hierarchy shows on objects that grant access using hierarchies.
    queues: frozenset[int] = frozenset()
    queues_below: frozenset[int] = frozenset()
    # The users below this one and the groups and roles holding one: sharing rules to them reach this user on
    # objects that grant access using hierarchies (``principals.inherited_principals``).
    inherited: frozenset[int] = frozenset()
    # The role-tree positions strictly below this user's role, (lo, hi]: shares reaching a position in it reach
    # this user on those objects (``security/reach.py``). None when no role is below.
    span: tuple[int, int] | None = None
    # The depth of this user's role in the hierarchy (the root's is 0), from ``keel_owner_lineage``: managers at
    # depths 1..4 test "owned below me" on the records' lineage columns (``security/lineage.py``).
    role_depth: int | None = None

    version: int = 0
    _memo: dict[tuple[str, str, str], bool] = field(default_factory=dict)

    @property
    def security_key(self) -> tuple[int, int]:
        """The plan-cache key for queries filtered by this access: predicates embed this user's principals."""
        return (self.user_pk, self.version)

    cache_key = security_key

    # -- object permissions ---------------------------------------------------------------------------
    def has(self, permission: str) -> bool:
        return permission in self.system

    def can(self, obj: str, action: str) -> bool:
        if "ModifyAllData" in self.system:
            return True
        key = obj.lower()
        parent = self._share_parent(key)
        if parent is not None:  # <Object>Share: anyone who reads the object may try; the hooks decide per record
            return action in ("read", "create", "edit", "delete") and self.can(parent, "read")
        granted = self.objects.get(key, frozenset())
        if action in granted or "modify_all" in granted:
            return True
        if action == "view_all":
            return "ViewAllData" in self.system
        if action == "read":
            if "ViewAllData" in self.system or "view_all" in granted or key in PUBLIC_SETUP:
                return True
            if key in SETUP_OBJECTS and self.system & {"ViewSetup", "ManageUsers", "CustomizeApplication"}:
                return True
        if action in ("create", "edit", "delete"):
            if key in USER_ADMIN_OBJECTS and "ManageUsers" in self.system:
                return True
            if key in CUSTOMIZE_OBJECTS and "CustomizeApplication" in self.system:
                return True
        return False

    def _share_parent(self, key: str) -> str | None:
        if not key.endswith("share"):
            return None
        o = self.schema.find_object(key)
        shape = share_shape(self.schema, o) if o is not None else None
        return shape.parent.api_name if shape is not None else None

    # -- field-level security -------------------------------------------------------------------------
    def field_readable(self, obj: str, field: str) -> bool:
        return self._field(obj, field, "read")

    def field_editable(self, obj: str, field: str) -> bool:
        return self._field(obj, field, "edit")

    def _field(self, obj: str, fname: str, mode: str) -> bool:
        k = (obj.lower(), fname.lower(), mode)
        hit = self._memo.get(k)
        if hit is None:
            hit = self._memo[k] = self._decide_field(k[0], k[1], mode)
        return hit

    def _decide_field(self, okey: str, fkey: str, mode: str) -> bool:
        if "ModifyAllData" in self.system or (mode == "read" and "ViewAllData" in self.system):
            return True
        o = self.schema.find_object(okey)
        f = o.find_field(fkey) if o is not None else None
        if o is None or f is None:
            return False
        readable = self.can(okey, "read")
        writable = self.can(okey, "edit") or self.can(okey, "create")
        if mode == "read" and not readable:
            return False
        if mode == "edit" and not writable:
            return False
        # Setup objects, standard fields and universally required fields follow the object permission.
        if okey in SETUP_OBJECTS or f.standard or f.required or self._share_parent(okey) is not None:
            return True
        read, edit = self.fields.get((okey, fkey), (False, False))
        return (read or edit) if mode == "read" else edit

    def sensitive_readable(self, obj: ObjectDef) -> tuple[str, ...]:
        """Fields marked ``sensitive`` this user can read; reading them is audited."""
        return tuple(f.api_name for f in obj.fields if f.sensitive and self.field_readable(obj.api_name, f.api_name))

    # -- record visibility ----------------------------------------------------------------------------
    def bypasses(self, obj: ObjectDef, mode: str) -> bool:
        if "ModifyAllData" in self.system or self.can(obj.api_name, "modify_all"):
            return True
        if obj.key in SETUP_OBJECTS:  # setup records are not shared: the object permission decides
            return True
        return mode == "read" and self.can(obj.api_name, "view_all")

    def record_filter(self, obj: ObjectDef, table: FromClause, mode: str) -> ColumnElement[bool] | None:
        return visibility(self, obj, table, mode)

    def row_filter(self, obj: ObjectDef, table: FromClause) -> ColumnElement[bool] | None:
        """The ``row_filter`` callable ``compile_soql`` takes."""
        return visibility(self, obj, table, "read")

    def field_mask(self, obj: ObjectDef, f: object) -> bool:
        """The ``field_mask`` callable ``compile_soql`` takes (``f`` is a ``FieldDef``)."""
        return self.field_readable(obj.api_name, str(getattr(f, "api_name", f)))


def load_access(conn: Connection, schema: SchemaSnapshot, user_pk: int, *,
                owner_list_max: int = OWNER_LIST_MAX) -> UserAccess:
    """Read one user's rights from the permission sObjects. An unknown or inactive user gets nothing.

    ``owner_list_max`` bounds the owner ids embedded in predicates; the property test lowers it to check the
    closure-subquery form against the same reference."""
    ut = live(schema, "User")
    row = conn.execute(sa.select(col(schema, "User", "UserRoleId"), col(schema, "User", "ProfileId"),
                                 col(schema, "User", "IsActive"))
                       .where(ut.c.id == user_pk, ut.c.is_deleted == sa.false())).first()
    if row is None or not row[2]:
        return UserAccess(schema, user_pk, None, None, frozenset(), {}, {}, frozenset({user_pk}), (), {})
    role_pk = int(row[0]) if row[0] is not None else None
    profile_pk = int(row[1]) if row[1] is not None else None
    psets = permission_sets_of(conn, schema, user_pk, profile_pk)
    system: set[str] = set()
    objects: dict[str, set[str]] = {}
    fields: dict[tuple[str, str], tuple[bool, bool]] = {}
    if psets:
        pt = live(schema, "PermissionSet")
        cols = [col(schema, "PermissionSet", "Permissions" + p) for p in SYSTEM_PERMISSIONS]
        for r in conn.execute(sa.select(*cols).where(pt.c.id.in_(psets), pt.c.is_deleted == sa.false())):
            system.update(p for p, v in zip(SYSTEM_PERMISSIONS, r, strict=True) if v)
        ot = live(schema, "ObjectPermissions")
        ocols = [col(schema, "ObjectPermissions", c) for c in OBJECT_ACTIONS.values()]
        q = sa.select(col(schema, "ObjectPermissions", "SobjectType"), *ocols).where(
            col(schema, "ObjectPermissions", "ParentId").in_(psets), ot.c.is_deleted == sa.false())
        for r in conn.execute(q):
            objects.setdefault(str(r[0]).lower(), set()).update(
                a for a, v in zip(OBJECT_ACTIONS, r[1:], strict=True) if v)
        ft = live(schema, "FieldPermissions")
        fq = sa.select(col(schema, "FieldPermissions", "Field"), col(schema, "FieldPermissions", "PermissionsRead"),
                       col(schema, "FieldPermissions", "PermissionsEdit")).where(
            col(schema, "FieldPermissions", "ParentId").in_(psets), ft.c.is_deleted == sa.false())
        for name, read, edit in conn.execute(fq):
            o, _, f = str(name).lower().partition(".")
            old = fields.get((o, f), (False, False))
            fields[(o, f)] = (old[0] or bool(read) or bool(edit), old[1] or bool(edit))
    principals = user_principals(conn, user_pk)
    subs = subordinate_role_keys(conn, role_pk)
    inherited = inherited_principals(conn, subs) - principals
    rules = load_rules(conn, schema, principals | inherited)
    below = owners_below(conn, subs, owner_list_max)
    queues, queues_below = owning_queues(conn, schema, principals, subs)
    return UserAccess(schema, user_pk, role_pk, profile_pk, frozenset(system),
                      {k: frozenset(v) for k, v in objects.items()}, fields, principals, subs, rules,
                      dense=_dense(conn, schema, subs, below), owners_below=below, dialect=conn.dialect.name,
                      queues=queues, queues_below=queues_below, inherited=inherited,
                      span=role_span(conn, role_pk) if subs else None,
                      role_depth=_role_depth(conn, user_pk) if subs else None)


def _role_depth(conn: Connection, user_pk: int) -> int | None:
    found = lineage.of_owners(conn, (user_pk,), lock=False).get(user_pk)
    return int(found[0]) if found is not None and found[0] is not None else None


def owners_below(conn: Connection, subordinate_keys: tuple[int, ...],
                 limit: int = OWNER_LIST_MAX) -> tuple[int, ...] | None:
    """The users whose records the hierarchy shows, sorted; None when there are more than ``limit``.

    A list sorted by name under private sharing tests every row it walks past; testing the owner against one
    list of ids bound in the statement costs less than building that list from the closure table in every
    statement and probing it next to ``owner_id = :me``."""
    if not subordinate_keys:
        return ()
    q = (sa.select(principal_members.c.user_id).where(principal_members.c.principal.in_(subordinate_keys))
         .distinct().order_by(principal_members.c.user_id).limit(limit + 1))
    found = tuple(int(u) for u in conn.execute(q).scalars())
    return found if len(found) <= limit else None


def _dense(conn: Connection, schema: SchemaSnapshot, subordinate_keys: tuple[int, ...],
           below_list: tuple[int, ...] | None) -> bool:
    """Whether the user sees the records of at least 2% of users through the hierarchy. Then a sorted list is
    cheapest as an in-order scan that tests each row; otherwise as a union of owner/share index probes. The
    predicate's form steers the planner (SQLite otherwise picks the union even for managers of thousands)."""
    if not subordinate_keys:
        return False
    below = len(below_list) if below_list is not None else conn.execute(
        sa.select(sa.func.count(sa.distinct(principal_members.c.user_id)))
        .where(principal_members.c.principal.in_(subordinate_keys))).scalar_one()
    ut = live(schema, "User")
    active = col(schema, "User", "IsActive") == sa.true()
    total = conn.execute(sa.select(sa.func.count()).select_from(ut).where(ut.c.is_deleted == sa.false(), active)
                         ).scalar_one()
    return (int(below) + 1) * 50 >= int(total or 1)


def permission_sets_of(conn: Connection, schema: SchemaSnapshot, user_pk: int, profile_pk: int | None) -> list[int]:
    """The profile's own permission set, assigned sets, and the sets inside assigned permission set groups."""
    pt = live(schema, "PermissionSet")
    out: set[int] = set()
    if profile_pk is not None:
        out.update(conn.execute(sa.select(pt.c.id).where(col(schema, "PermissionSet", "ProfileId") == profile_pk,
                                                         pt.c.is_deleted == sa.false())).scalars())
    at = live(schema, "PermissionSetAssignment")
    groups: set[int] = set()
    for ps, psg in conn.execute(sa.select(col(schema, "PermissionSetAssignment", "PermissionSetId"),
                                          col(schema, "PermissionSetAssignment", "PermissionSetGroupId"))
                                .where(col(schema, "PermissionSetAssignment", "AssigneeId") == user_pk,
                                       at.c.is_deleted == sa.false())):
        if ps is not None:
            out.add(int(ps))
        if psg is not None:
            groups.add(int(psg))
    if groups:
        ct = live(schema, "PermissionSetGroupComponent")
        out.update(conn.execute(sa.select(col(schema, "PermissionSetGroupComponent", "PermissionSetId")).where(
            col(schema, "PermissionSetGroupComponent", "PermissionSetGroupId").in_(groups),
            ct.c.is_deleted == sa.false())).scalars())
    return sorted(int(x) for x in out)


class AccessCache:
    """Per-process cache of ``UserAccess`` keyed by (user, security version, schema version). Lives in
    ``ctx.extras['access_cache']``; nothing global."""

    def __init__(self, size: int = 1024) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, int, int], UserAccess] = OrderedDict()
        self._size = size

    def get(self, conn: Connection, schema: SchemaSnapshot, user_pk: int) -> UserAccess:
        key = (user_pk, security_version(conn), schema.version)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        access = load_access(conn, schema, user_pk)
        access.version = key[1]
        with self._lock:
            self._items[key] = access
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return access
