"""Queues: Groups with ``Type = 'Queue'`` that own records, as in Salesforce.

A queue's ``QueueSobject`` rows say which objects it may own. A record owned by a queue stores the queue in
``owner_id`` as its group principal (``ids.QUEUE_OWNER`` + the Group pk, which is ``principals.group_key``), so
the visibility predicate grants its members ownership with the same owner list it already tests: the queues a
user belongs to (and, on objects that grant access using hierarchies, the queues with a member in a role below
theirs) are read once with the user's access, like the users below.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.metadata.model import SchemaSnapshot
from keel.security.principals import GROUP, col, group_key, live
from keel.security.tables import principal_members


def queue_pks(conn: Connection, schema: SchemaSnapshot) -> set[int]:
    """The pks of every live Group of type Queue."""
    gt = live(schema, "Group")
    q = sa.select(gt.c.id).where(gt.c.is_deleted == sa.false(), col(schema, "Group", "Type") == "Queue")
    return {int(pk) for pk in conn.execute(q).scalars()}


def supporting_queues(conn: Connection, schema: SchemaSnapshot, obj_name: str, group_pks: Iterable[int]) -> set[int]:
    """Those of ``group_pks`` that are queues allowed to own ``obj_name`` records (a ``QueueSobject`` row)."""
    wanted = sorted(set(group_pks))
    if not wanted or schema.find_object("QueueSobject") is None:  # an org from before queues: none supports any
        return set()
    gt, qt = live(schema, "Group"), live(schema, "QueueSobject")
    queue = col(schema, "QueueSobject", "QueueId")
    q = (sa.select(queue).select_from(qt.join(gt, gt.c.id == queue))
         .where(queue.in_(wanted), qt.c.is_deleted == sa.false(), gt.c.is_deleted == sa.false(),
                col(schema, "Group", "Type") == "Queue",
                sa.func.lower(col(schema, "QueueSobject", "SobjectType")) == obj_name.lower()))
    return {int(pk) for pk in conn.execute(q).scalars()}


def owning_queues(conn: Connection, schema: SchemaSnapshot, principals: frozenset[int],
                  subordinate_keys: tuple[int, ...]) -> tuple[frozenset[int], frozenset[int]]:
    """(owner keys of the queues this user is a member of, owner keys of queues with a member below them).

    Members come from the closure (``keel_principal_member``), so a queue whose member is a group or a role
    counts everyone in it. Both sets are small: queues are few and their keys are embedded in the predicate."""
    queues = queue_pks(conn, schema)
    if not queues:
        return frozenset(), frozenset()
    keys = {group_key(pk) for pk in queues}
    mine = frozenset(p for p in principals if p & ~(GROUP - 1) == GROUP and p in keys)
    if not subordinate_keys:
        return mine, frozenset()
    below = sa.select(principal_members.c.user_id).where(principal_members.c.principal.in_(subordinate_keys))
    q = (sa.select(principal_members.c.principal).distinct()
         .where(principal_members.c.principal.in_(sorted(keys)), principal_members.c.user_id.in_(below)))
    return mine, frozenset(int(p) for p in conn.execute(q).scalars())
