"""Security use cases that write through the record lifecycle: profiles at init, assigning profiles and roles,
deploying permission-set YAML, sharing records, single-record reads, the audited system context, administering
connected apps, and wiring security into a Context.

Wiring (``wire_security``) puts ``SecurityHooks`` into ``ctx.hooks`` and these functions into ``ctx.extras``:
``revoke_sessions`` and ``assign_profile`` (called by ``services/users.py``) and ``access_cache``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.context import SYSTEM_ACTOR, Context
from keel.errors import AccessDeniedError, KeelError, NotFoundError
from keel.metadata.model import SchemaSnapshot
from keel.metadata.tables import table_for
from keel.records import delete_many, save_many
from keel.records.hooks import find_hook
from keel.records.validate import row_to_values
from keel.security import reach, sessions
from keel.security.access import bump_security_version
from keel.security.audit import audit, audit_sensitive_read
from keel.security.hooks import MANUAL, SecurityHooks
from keel.security.package import PermissionSetSpec, check_against, load_permission_sets
from keel.security.passwords import hash_password
from keel.security.predicate import ALL, EDIT, READ
from keel.security.principals import RecalcResult, principal_for_id, recalculate
from keel.security.shareobj import custom_share_object, share_object_of
from keel.security.tables import connected_apps, create_security_tables, oauth_approvals, oauth_codes, shares
from keel.security.tables import sessions as session_rows
from keel.storage import ids

ADMIN_PROFILE = "System Administrator"
STANDARD_PROFILE = "Standard User"
STANDARD_CRM_OBJECTS = ("Account", "Contact", "Lead", "Opportunity", "Case", "Task", "Event", "Note", "Attachment")
ACCESS_LEVELS = {"Read": READ, "Edit": EDIT, "All": ALL}


def wire_security(ctx: Context) -> Context:
    """A Context whose lifecycle keeps security data consistent and whose user services can revoke sessions
    and assign profiles. Idempotent."""
    hooks = ctx.hooks if find_hook(ctx.hooks, SecurityHooks) is not None else SecurityHooks(inner=ctx.hooks)
    ctx.extras.setdefault("revoke_sessions", sessions.revoke_sessions)
    ctx.extras.setdefault("assign_profile", assign_profile)
    ctx.extras.setdefault("audit", audit_event)
    sessions.access_cache(ctx)
    return replace(ctx, hooks=hooks)


def audit_event(ctx: Context, action: str, obj: str | None = None, count: int | None = None,
                detail: Any = None) -> None:
    """Audit a use case that has no transaction of its own (an export, a report run), in a new transaction."""
    with ctx.db.transaction() as conn:
        audit(conn, action, actor_id=ctx.actor.user_id, object=obj, at=ctx.clock(),
              detail=detail if detail is not None else ({"rows": count} if count is not None else None))


def user_context(ctx: Context, user_id: str | int) -> Context:
    """``ctx`` acting as a user, with that user's current ``Access`` (for tests, jobs run on behalf of a user,
    and the API after ``resolve_token``)."""
    pk = user_id if isinstance(user_id, int) else ids.decode(user_id, "005")
    with ctx.db.read() as conn:
        actor = sessions.actor_for(ctx, conn, pk)
    if actor is None:
        raise KeelError("That user is inactive or does not exist.", code="INACTIVE_OWNER_OR_USER")
    return ctx.as_actor(actor)


def system_context(ctx: Context, reason: str, *, conn: Connection | None = None) -> Context:
    """The explicit system context for internal jobs: full access, and every use is in the audit log."""
    def write(c: Connection) -> None:
        audit(c, "system_context", actor_id=SYSTEM_ACTOR.user_id, on_behalf_of_id=ctx.actor.user_id,
              detail={"reason": reason}, at=ctx.clock())
    if conn is not None:
        write(conn)
    else:
        with ctx.db.transaction() as c:
            write(c)
    return ctx.as_actor(SYSTEM_ACTOR)


# -- profiles and permission sets ---------------------------------------------------------------------------

def install_security_tables(ctx: Context) -> None:
    with ctx.db.transaction() as conn:
        create_security_tables(conn)


def install_security(ctx: Context) -> None:
    """Create security tables and the two standard profiles (``keel init``, after the system user exists).
    Safe to call again."""
    with ctx.db.transaction() as conn:
        create_security_tables(conn)
        schema = ctx.schema(conn)
        sysctx = ctx.as_actor(SYSTEM_ACTOR)
        if _find_by_name(conn, schema, "Profile", ADMIN_PROFILE) is None:
            deploy_permission_set(sysctx, conn, PermissionSetSpec(
                ADMIN_PROFILE, ADMIN_PROFILE, True, ("ModifyAllData", "ViewAllData", "ManageUsers",
                                                     "CustomizeApplication", "ApiEnabled", "ExportReport",
                                                     "ViewSetup"), {}, {}))
        if _find_by_name(conn, schema, "Profile", STANDARD_PROFILE) is None:
            objects: dict[str, tuple[str, ...]] = {
                o: ("read", "create", "edit") for o in STANDARD_CRM_OBJECTS if schema.find_object(o)}
            fields: dict[str, tuple[bool, bool]] = {}
            for o in objects:
                for f in schema.get_object(o).fields:
                    if not f.standard and not f.system_managed and not f.required:
                        fields[f"{o}.{f.api_name}"] = (True, True)
                    elif f.type in ("formula", "rollup", "auto_number") and not f.standard:
                        fields[f"{o}.{f.api_name}"] = (True, False)
            deploy_permission_set(sysctx, conn, PermissionSetSpec(STANDARD_PROFILE, STANDARD_PROFILE, True, (),
                                                                  objects, fields))


def _find_by_name(conn: Connection, schema: SchemaSnapshot, obj_name: str, name: str) -> int | None:
    obj = schema.get_object(obj_name)
    t = table_for(schema, obj)
    v = conn.execute(sa.select(t.c.id).where(sa.func.lower(t.c.name) == name.lower(),
                                             t.c.is_deleted == sa.false())).scalar()
    return int(v) if v is not None else None


def deploy_permission_set(ctx: Context, conn: Connection, spec: PermissionSetSpec) -> str:
    """Create or replace a permission set (or profile) and its object and field permissions, in ``conn``'s
    transaction; returns the PermissionSet id."""
    schema = ctx.schema(conn)
    check_against(spec, schema)
    flags = {f"Permissions{p}": p in spec.system for p in
             ("ModifyAllData", "ViewAllData", "ManageUsers", "CustomizeApplication", "ApiEnabled", "ExportReport",
              "ViewSetup", "ForceTwoFactor")}
    profile_id = None
    if spec.profile:
        pk = _find_by_name(conn, schema, "Profile", spec.name)
        profile_id = ids.encode("00e", pk) if pk is not None else save_many(
            ctx, "Profile", [{"Name": spec.name, "Description": spec.description}], conn=conn)[0].id
    ps_pk = _find_by_name(conn, schema, "PermissionSet", spec.name)
    draft: dict[str, Any] = {"Name": spec.name, "Label": spec.label, "Description": spec.description, **flags}
    if profile_id:
        draft.update(ProfileId=profile_id, IsOwnedByProfile=True)
    if ps_pk is not None:
        draft["Id"] = ids.encode("0PS", ps_pk)
        for child in ("ObjectPermissions", "FieldPermissions"):
            obj = schema.get_object(child)
            t = table_for(schema, obj)
            parent = t.c[obj.get_field("ParentId").column or ""]
            conn.execute(sa.update(t).where(parent == ps_pk).values(is_deleted=True))
    ps_id = save_many(ctx, "PermissionSet", [draft], conn=conn)[0].id
    assert ps_id is not None
    acts = {"read": "PermissionsRead", "create": "PermissionsCreate", "edit": "PermissionsEdit",
            "delete": "PermissionsDelete", "view_all": "PermissionsViewAllRecords",
            "modify_all": "PermissionsModifyAllRecords"}
    ops = [{"ParentId": ps_id, "SobjectType": schema.get_object(o).api_name,
            **{col: a in actions for a, col in acts.items()}} for o, actions in spec.objects.items()]
    if ops:
        save_many(ctx, "ObjectPermissions", ops, conn=conn)
    fps = []
    for name, (read, edit) in spec.fields.items():
        o, _, f = name.partition(".")
        od = schema.get_object(o)
        fps.append({"ParentId": ps_id, "SobjectType": od.api_name, "Field": f"{od.api_name}.{od.get_field(f).api_name}",
                    "PermissionsRead": read, "PermissionsEdit": edit})
    for start in range(0, len(fps), 500):
        save_many(ctx, "FieldPermissions", fps[start:start + 500], conn=conn)
    bump_security_version(conn)
    return ps_id


def deploy_permission_sets(ctx: Context, path: str | Path) -> list[str]:
    """Deploy every ``permission_sets/*.yaml`` of a package in one transaction; returns the PermissionSet ids."""
    specs = load_permission_sets(path)
    with ctx.db.transaction() as conn:
        return [deploy_permission_set(ctx, conn, spec) for spec in specs]


def assign_permission_set(ctx: Context, conn: Connection, user_id: str, permission_set: str) -> str:
    schema = ctx.schema(conn)
    pk = _find_by_name(conn, schema, "PermissionSet", permission_set)
    if pk is None:
        raise NotFoundError(f"No permission set named {permission_set!r}.")
    res = save_many(ctx, "PermissionSetAssignment", [{"AssigneeId": user_id,
                                                      "PermissionSetId": ids.encode("0PS", pk)}], conn=conn)
    assert res[0].id is not None
    return res[0].id


def assign_profile(ctx: Context, conn: Connection, user_id: str, profile: str | None, role: str | None) -> None:
    """Set a user's profile (default "Standard User") and role by name; the hook for ``users.create_user``."""
    schema = ctx.schema(conn)
    pk = _find_by_name(conn, schema, "Profile", profile or STANDARD_PROFILE)
    if pk is None:
        raise NotFoundError(f"No profile named {profile!r}.")
    draft: dict[str, Any] = {"Id": user_id, "ProfileId": ids.encode("00e", pk)}
    if role:
        rpk = _find_by_name(conn, schema, "UserRole", role)
        if rpk is None:
            raise NotFoundError(f"No role named {role!r}.")
        draft["UserRoleId"] = ids.encode("00E", rpk)
    save_many(ctx, "User", [draft], conn=conn)


def create_role(ctx: Context, conn: Connection, name: str, parent: str | None = None) -> str:
    schema = ctx.schema(conn)
    draft: dict[str, Any] = {"Name": name, "DeveloperName": name.replace(" ", "_")}
    if parent:
        ppk = _find_by_name(conn, schema, "UserRole", parent)
        if ppk is None:
            raise NotFoundError(f"No role named {parent!r}.")
        draft["ParentRoleId"] = ids.encode("00E", ppk)
    rid = save_many(ctx, "UserRole", [draft], conn=conn)[0].id
    assert rid is not None
    return rid


def ensure_queue(ctx: Context, conn: Connection, name: str, objects: list[str], *,
                 member_roles: list[str] | tuple[str, ...] = ()) -> str:
    """A queue (a Group of type Queue) named ``name`` that may own ``objects``, created when missing; on a queue
    that exists, the objects it lacks are added and nothing is removed. ``member_roles``: roles whose users and
    subordinates are members (added when the queue is created). Returns the queue's id."""
    schema = ctx.schema(conn)
    for o in objects:
        schema.get_object(o)  # a typo fails the install instead of making a queue that can own nothing
    pk = _find_by_name(conn, schema, "Group", name)
    if pk is None:
        qid = save_many(ctx, "Group", [{"Name": name, "DeveloperName": name.replace(" ", "_"), "Type": "Queue"}],
                        conn=conn)[0].id
        assert qid is not None
        members = []
        for role in member_roles:
            rpk = _find_by_name(conn, schema, "UserRole", role)
            if rpk is None:
                raise NotFoundError(f"No role named {role!r}.")
            members.append({"GroupId": qid, "UserOrGroupId": ids.encode("00E", rpk), "IncludeSubordinates": True})
        if members:
            save_many(ctx, "GroupMember", members, conn=conn)
    else:
        qid = ids.encode("00G", pk)
        save_many(ctx, "Group", [{"Id": qid, "Type": "Queue"}], conn=conn)
    qs = schema.get_object("QueueSobject")
    qt = table_for(schema, qs)
    sobject, queue = (qt.c[qs.get_field(n).column or ""] for n in ("SobjectType", "QueueId"))
    have = {str(v).lower() for v in conn.execute(sa.select(sobject).where(
        queue == ids.decode(qid, "00G"), qt.c.is_deleted == sa.false())).scalars()}
    missing = [o for o in objects if o.lower() not in have]
    if missing:
        save_many(ctx, "QueueSobject", [{"QueueId": qid, "SobjectType": o} for o in missing], conn=conn)
    return qid


def ensure_share_objects(ctx: Context) -> list[str]:
    """Create ``<Name>__Share`` for every custom object whose OWD needs shares (Private or Public Read Only) and
    that has none yet; call it after deploying a package. Returns the names created."""
    from keel.metadata.apply import apply_plan
    from keel.metadata.plan import plan

    with ctx.db.read() as conn:
        before = ctx.schema(conn)
    wanted = [custom_share_object(o) for o in before if o.custom and not o.api_name.endswith("__Share")
              and o.sharing in ("private", "public_read") and share_object_of(before, o) is None]
    if wanted:
        apply_plan(ctx.db, plan(before, wanted), ctx.metadata)
    return [o.api_name for o in wanted]


def recalculate_sharing(ctx: Context, progress: Any = None) -> RecalcResult:
    """Rebuild role and group closures as one transaction, reporting progress; audited."""
    _require(ctx, "ManageUsers")
    with ctx.db.transaction() as conn:
        result = recalculate(conn, ctx.schema(conn), progress)
        bump_security_version(conn)
        audit(conn, "sharing_recalculated", actor_id=ctx.actor.user_id, detail=result.__dict__ if hasattr(
            result, "__dict__") else {"member_rows": result.member_rows}, at=ctx.clock())
    return result


def sharing_unfilled(ctx: Context) -> bool:
    """Whether derived sharing tables are empty where the organisation's data calls for rows: role-tree positions
    when there are roles (a database upgraded by migration 0004: managers inherit no shares until a recalculation)
    or owner lineage when users hold roles (0007: managers keep the slower owner-list test until then)."""
    from keel.security.principals import col, live
    from keel.security.tables import owner_lineage, role_spans

    with ctx.db.read() as conn:
        insp = sa.inspect(conn)
        if not insp.has_table(role_spans.name):
            return False

        def empty(t: sa.Table) -> bool:
            return insp.has_table(t.name) and conn.execute(sa.select(t.c[0]).limit(1)).first() is None

        def exists(q: sa.Select[Any]) -> bool:
            return conn.execute(q.limit(1)).first() is not None

        schema = ctx.schema(conn)
        if schema.find_object("UserRole") is None or schema.find_object("User") is None:
            return False
        roles, users = live(schema, "UserRole"), live(schema, "User")
        if empty(role_spans) and exists(sa.select(roles.c.id).where(roles.c.is_deleted == sa.false())):
            return True
        return empty(owner_lineage) and exists(sa.select(users.c.id).where(
            users.c.is_deleted == sa.false(), col(schema, "User", "IsActive") == sa.true(),
            col(schema, "User", "UserRoleId").is_not(None)))


def _require(ctx: Context, permission: str) -> None:
    access = ctx.actor.access
    if ctx.actor.is_system:
        return
    has = getattr(access, "has", None)
    if has is None or not (has(permission) or has("ModifyAllData")):
        raise AccessDeniedError(f"This needs the {permission} permission.")


# -- shares --------------------------------------------------------------------------------------------------

def share_record(ctx: Context, obj_name: str, record_id: str, user_or_group_id: str, access_level: str = "Read", *,
                 reason: str = MANUAL, include_subordinates: bool = False, conn: Connection | None = None) -> None:
    """Grant ``access_level`` (Read | Edit | All) on one record. Manual shares need full access to the record
    and vanish when the owner changes; any other ``reason`` is a programmatic share, which needs Modify All Data
    and survives an owner change."""
    if conn is None:
        with ctx.db.transaction() as c:
            return share_record(ctx, obj_name, record_id, user_or_group_id, access_level, reason=reason,
                                include_subordinates=include_subordinates, conn=c)
    schema = ctx.schema(conn)
    obj = schema.get_object(obj_name)
    if obj.sharing == "controlled_by_parent":
        raise KeelError(f"{obj.api_name} is controlled by its parent and cannot be shared.", code="INVALID_OPERATION")
    level = ACCESS_LEVELS.get(access_level)
    if level is None:
        raise KeelError("Access level must be Read, Edit or All.", code="INVALID_ACCESS_LEVEL")
    pk = ids.decode(record_id, obj.key_prefix)
    if reason != MANUAL:
        _require(ctx, "ModifyAllData")
    elif not ctx.actor.is_system:
        t = table_for(schema, obj)
        pred = ctx.actor.access.record_filter(obj, t, "delete")
        q = sa.select(t.c.id).where(t.c.id == pk, t.c.is_deleted == sa.false())
        if conn.execute(q.where(pred) if pred is not None else q).first() is None:
            raise AccessDeniedError("Only the owner, users above the owner in the role hierarchy and administrators "
                                    "can share this record.", code="INSUFFICIENT_ACCESS_OR_READONLY")
    principal = principal_for_id(user_or_group_id, subordinates=include_subordinates)
    prefix, n = ids.split(user_or_group_id.strip())
    grantee = ids.encode(prefix, n)
    now = ctx.clock()
    shape = share_object_of(schema, obj)
    if shape is not None:
        st = table_for(schema, shape.share)
        f = {k: st.c[shape.share.get_field(k).column or ""] for k in ("UserOrGroupId", "RowCause",
                                                                         "IncludeSubordinates")}
        parent_col = st.c[shape.parent_field.column or ""]
        existing = conn.execute(sa.select(st.c.id).where(
            parent_col == pk, f["UserOrGroupId"] == grantee, f["RowCause"] == reason,
            f["IncludeSubordinates"] == include_subordinates, st.c.is_deleted == sa.false())).scalar()
        draft: dict[str, Any] = {shape.level_field.api_name: access_level}
        if existing is not None:
            draft["Id"] = ids.encode(shape.share.key_prefix, int(existing))
        else:
            draft.update({shape.parent_field.api_name: ids.encode(obj.key_prefix, pk), "UserOrGroupId": grantee,
                          "RowCause": reason, "IncludeSubordinates": include_subordinates})
        save_many(ctx, shape.share.api_name, [draft], conn=conn)
    else:
        existing = conn.execute(sa.select(shares.c.id).where(
            shares.c.object_id == obj.id, shares.c.record_id == pk, shares.c.principal == principal,
            shares.c.row_cause == reason)).scalar()
        if existing is not None:
            conn.execute(sa.update(shares).where(shares.c.id == existing).values(access_level=level))
        else:
            conn.execute(sa.insert(shares).values(object_id=obj.id, record_id=pk, principal=principal,
                                                  access_level=level, row_cause=reason, created_date=now,
                                                  created_by_id=ctx.actor.user_id))
        reach.refresh(conn, schema, obj.id, (pk,))
    audit(conn, "share", actor_id=ctx.actor.user_id, object=obj.api_name, record_id=pk,
          detail={"to": grantee, "level": access_level, "cause": reason}, at=now)
    return None


def unshare_record(ctx: Context, obj_name: str, record_id: str, user_or_group_id: str, *, reason: str = MANUAL,
                   include_subordinates: bool = False) -> int:
    with ctx.db.transaction() as conn:
        schema = ctx.schema(conn)
        obj = schema.get_object(obj_name)
        pk = ids.decode(record_id, obj.key_prefix)
        if reason != MANUAL:
            _require(ctx, "ModifyAllData")
        principal = principal_for_id(user_or_group_id, subordinates=include_subordinates)
        shape = share_object_of(schema, obj)
        n = 0
        if shape is not None:
            st = table_for(schema, shape.share)
            who = st.c[shape.share.get_field("UserOrGroupId").column or ""]
            cause = st.c[shape.share.get_field("RowCause").column or ""]
            prefix, num = ids.split(user_or_group_id.strip())
            rows = conn.execute(sa.select(st.c.id).where(
                st.c[shape.parent_field.column or ""] == pk, who == ids.encode(prefix, num), cause == reason,
                st.c.is_deleted == sa.false())).scalars().all()
            if rows:
                delete_many(ctx, shape.share.api_name, [ids.encode(shape.share.key_prefix, int(r)) for r in rows],
                            conn=conn)
                n = len(rows)
        n += int(conn.execute(sa.delete(shares).where(
            shares.c.object_id == obj.id, shares.c.record_id == pk, shares.c.principal == principal,
            shares.c.row_cause == reason, shares.c.share_id.is_(None))).rowcount or 0)
        reach.refresh(conn, schema, obj.id, (pk,))
        audit(conn, "unshare", actor_id=ctx.actor.user_id, object=obj.api_name, record_id=pk,
              detail={"from": user_or_group_id, "cause": reason}, at=ctx.clock())
        return n


# -- reads ---------------------------------------------------------------------------------------------------

def read_record(ctx: Context, obj_name: str, record_id: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """One record as the actor may see it: object Read, record visibility, and only readable fields.
    A hidden record is NOT_FOUND (existence is not leaked); reads of sensitive fields are audited."""
    with ctx.db.transaction() as conn:
        schema = ctx.schema(conn)
        obj = schema.get_object(obj_name)
        access = ctx.actor.access
        if not ctx.actor.is_system and not access.can(obj.api_name, "read"):
            raise AccessDeniedError(f"You do not have access to {obj.label} records.")
        pk = ids.decode(record_id, obj.key_prefix)
        t = table_for(schema, obj)
        q = sa.select(t).where(t.c.id == pk, t.c.is_deleted == sa.false())
        pred = None if ctx.actor.is_system else access.record_filter(obj, t, "read")
        row = conn.execute(q.where(pred) if pred is not None else q).mappings().first()
        if row is None:
            raise NotFoundError(f"The requested {obj.label} record does not exist or is not visible.")
        values = row_to_values(schema, obj, dict(row))
        wanted = [obj.get_field(f).api_name for f in fields] if fields is not None else list(values)
        out = {k: values.get(k) for k in wanted if ctx.actor.is_system or access.field_readable(obj.api_name, k)}
        sensitive = [f.api_name for f in obj.fields if f.sensitive and f.api_name in out]
        if sensitive:
            audit_sensitive_read(conn, actor_id=ctx.actor.user_id, object=obj.api_name, fields=sensitive, count=1,
                                 ids=[ids.encode(obj.key_prefix, pk)], record_id=pk, at=ctx.clock())
        return out


def mask_record(ctx: Context, obj_name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Strip fields the actor cannot read from any outgoing record (history rows, exports, change events)."""
    access = ctx.actor.access
    if ctx.actor.is_system:
        return dict(values)
    return {k: v for k, v in values.items() if k == "Id" or access.field_readable(obj_name, k)}


def kill_sessions(ctx: Context, user_id: str) -> int:
    """An administrator ends every session and token of a user (ASVS 7.4.5)."""
    _require(ctx, "ManageUsers")
    with ctx.db.transaction() as conn:
        return sessions.revoke_sessions(ctx, conn, ids.decode(user_id, "005"))


def unlock_user(ctx: Context, user_id: str) -> None:
    _require(ctx, "ManageUsers")
    with ctx.db.transaction() as conn:
        sessions.unlock_user(ctx, conn, ids.decode(user_id, "005"))


def enroll_totp(ctx: Context, user_id: str) -> str:
    pk = ids.decode(user_id, "005")
    if pk != ctx.actor.user_id:
        _require(ctx, "ManageUsers")
    with ctx.db.transaction() as conn:
        return sessions.enroll_totp(ctx, conn, pk)


def read_history(ctx: Context, obj_name: str, record_id: str) -> list[dict[str, Any]]:
    """Field history of one record, through the same gates as a read: object Read, record visibility, and only
    rows for fields the actor can read (frappe/crm#805 leaked hidden fields through activity logs). Old and new
    values of a sensitive field are a read of it: one audit entry names the fields, written after the read."""
    from keel.storage import system as S

    with ctx.db.read() as conn:
        schema = ctx.schema(conn)
        obj = schema.get_object(obj_name)
        access = ctx.actor.access
        if not ctx.actor.is_system and not access.can(obj.api_name, "read"):
            raise AccessDeniedError(f"You do not have access to {obj.label} records.")
        pk = ids.decode(record_id, obj.key_prefix)
        t = table_for(schema, obj)
        q = sa.select(t.c.id).where(t.c.id == pk)
        pred = None if ctx.actor.is_system else access.record_filter(obj, t, "read")
        if conn.execute(q.where(pred) if pred is not None else q).first() is None:
            raise NotFoundError(f"The requested {obj.label} record does not exist or is not visible.")
        h = S.history
        rows = conn.execute(sa.select(h).where(h.c.object_id == obj.id, h.c.record_id == pk)
                            .order_by(h.c.created_date, h.c.id)).mappings().all()
        out = [{"Field": r["field"], "OldValue": r["old_value"], "NewValue": r["new_value"],
                "CreatedDate": r["created_date"], "CreatedById": ids.encode("005", r["created_by_id"])
                if r["created_by_id"] is not None else None}
               for r in rows if ctx.actor.is_system or access.field_readable(obj.api_name, str(r["field"]))]
        sensitive = {f.api_name.lower(): f.api_name for f in obj.fields if f.sensitive}
        read = sorted({sensitive[k] for h in out if (k := str(h["Field"]).lower()) in sensitive})
        if read and not ctx.actor.is_system:
            actor, at, rid = ctx.actor.user_id, ctx.clock(), ids.encode(obj.key_prefix, pk)
            ctx.db.write_after_read(conn, lambda w: audit_sensitive_read(
                w, actor_id=actor, object=obj.api_name, fields=read, count=1, ids=[rid], record_id=pk,
                surface="history", at=at))
        return out


# -- connected apps ------------------------------------------------------------------------------------------
# Creating an app is ``sessions.create_connected_app``; these add what an administrator's screen needs around it.
# Only the secret's hash is ever stored, so a lost secret can be rotated but never shown again.

def list_connected_apps(ctx: Context) -> list[dict[str, Any]]:
    """Every connected app without its secret hash (names, client ids, run-as user, state)."""
    _require(ctx, "ViewSetup")
    c = connected_apps.c
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(c.name, c.client_id, c.run_as_user_id, c.created_date, c.is_active)
                            .order_by(c.name, c.id)).mappings().all()
    return [{"name": r["name"], "client_id": r["client_id"], "is_active": bool(r["is_active"]),
             "created_date": r["created_date"],
             "run_as_user_id": ids.encode("005", int(r["run_as_user_id"])) if r["run_as_user_id"] else None}
            for r in rows]


def register_connected_app(ctx: Context, name: str, run_as_user_id: str | None = None) -> tuple[str, str]:
    """An administrator registers an OAuth2 client; returns (client_id, client_secret), the secret for the only
    time. Without a run-as user the app can only use the password and refresh-token grants."""
    _require(ctx, "CustomizeApplication")
    name = name.strip()
    if not name or len(name) > 80:
        raise KeelError("A connected app needs a name of 1 to 80 characters.", code="REQUIRED_FIELD_MISSING",
                        fields=["name"])
    with ctx.db.transaction() as conn:
        run_as = None
        if run_as_user_id:
            run_as = ids.decode(run_as_user_id, "005")
            if not _user_exists(ctx, conn, run_as):
                raise NotFoundError("The run-as user does not exist.")
        return sessions.create_connected_app(ctx, conn, name, run_as_user_id=run_as)


def _user_exists(ctx: Context, conn: Connection, pk: int) -> bool:
    schema = ctx.schema(conn)
    t = table_for(schema, schema.get_object("User"))
    return conn.execute(sa.select(t.c.id).where(t.c.id == pk, t.c.is_deleted == sa.false())).first() is not None


def _app_pk(conn: Connection, client_id: str) -> int:
    pk = conn.execute(sa.select(connected_apps.c.id).where(connected_apps.c.client_id == client_id)).scalar()
    if pk is None:
        raise NotFoundError("No connected app with that client id.")
    return int(pk)


def rotate_connected_app_secret(ctx: Context, client_id: str) -> str:
    """Replace an app's secret; the old one stops working at commit. Returns the new secret (shown once).
    Tokens already issued stay valid, as on Salesforce: rotation is for a leaked secret, not a leaked token."""
    _require(ctx, "CustomizeApplication")
    secret = secrets.token_hex(32)
    with ctx.db.transaction() as conn:
        pk = _app_pk(conn, client_id)
        conn.execute(sa.update(connected_apps).where(connected_apps.c.id == pk)
                     .values(secret_hash=hash_password(secret)))
        audit(conn, "connected_app_secret_rotated", actor_id=ctx.actor.user_id, detail={"client_id": client_id},
              at=ctx.clock())
    return secret


def _revoke_client_tokens(ctx: Context, conn: Connection, client_id: str) -> int:
    return int(conn.execute(sa.update(session_rows).where(session_rows.c.client_id == client_id,
                                                          session_rows.c.revoked_at.is_(None))
                            .values(revoked_at=ctx.clock())).rowcount or 0)


def set_connected_app_active(ctx: Context, client_id: str, active: bool) -> int:
    """Activate or deactivate an app. Deactivating also revokes the tokens issued to it (client credentials and
    refreshes), since an administrator who switches an app off means its access to end now. Returns how many
    tokens were revoked."""
    _require(ctx, "CustomizeApplication")
    with ctx.db.transaction() as conn:
        pk = _app_pk(conn, client_id)
        conn.execute(sa.update(connected_apps).where(connected_apps.c.id == pk).values(is_active=active))
        n = 0 if active else _revoke_client_tokens(ctx, conn, client_id)
        audit(conn, "connected_app_activated" if active else "connected_app_deactivated",
              actor_id=ctx.actor.user_id, detail={"client_id": client_id, "tokens_revoked": n}, at=ctx.clock())
    return n


def delete_connected_app(ctx: Context, client_id: str) -> int:
    """Remove an app and revoke the tokens issued to it; returns how many tokens were revoked."""
    _require(ctx, "CustomizeApplication")
    with ctx.db.transaction() as conn:
        pk = _app_pk(conn, client_id)
        n = _revoke_client_tokens(ctx, conn, client_id)
        conn.execute(sa.delete(connected_apps).where(connected_apps.c.id == pk))
        conn.execute(sa.delete(oauth_approvals).where(oauth_approvals.c.client_id == client_id))
        conn.execute(sa.delete(oauth_codes).where(oauth_codes.c.client_id == client_id))
        audit(conn, "connected_app_deleted", actor_id=ctx.actor.user_id,
              detail={"client_id": client_id, "tokens_revoked": n}, at=ctx.clock())
    return n
