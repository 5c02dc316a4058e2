"""Change data capture: change events read back from the outbox, in Salesforce ChangeEvent shape.

The lifecycle writes one ``change`` row per batch and kind in the save's transaction, so the stream has exactly
the committed changes, in commit order of their outbox ids. The outbox id is the replay id: a subscriber resumes
after the last id it saw (kept by the client, or server-side under a subscriber name in ``keel_cdc_position``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.automation.tables import cdc_positions
from keel.metadata.model import SchemaSnapshot
from keel.storage import ids
from keel.storage import system as S

ALL_CHANNEL = "ChangeEvents"


def channel_object(channel: str) -> str | None:
    """``ChangeEvents`` -> every object; ``AccountChangeEvent`` / ``Position__ChangeEvent`` -> one object."""
    if channel == ALL_CHANNEL:
        return None
    name = channel.removesuffix("ChangeEvent")
    return name + "c" if name.endswith("__") else name


def latest_id(conn: Connection) -> int:
    o = S.outbox
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(o.c.id), 0)).where(o.c.topic == "change"))
               .scalar_one())


def read_events(conn: Connection, schema: SchemaSnapshot, after: int, *, entity: str | None,
                readable: Callable[[str], bool], limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
    o = S.outbox
    q = sa.select(o.c.id, o.c.payload, o.c.idempotency_key).where(o.c.topic == "change", o.c.id > after)
    if entity is not None:
        obj = schema.find_object(entity)
        if obj is None:
            return []
        q = q.where(o.c.object_id == obj.id)
    out = []
    for oid, payload, key in conn.execute(q.order_by(o.c.id).limit(limit)):
        p = orjson.loads(payload)
        obj = schema.find_object(p["entityName"])
        if obj is None or not readable(obj.api_name):
            continue
        header = {"entityName": obj.api_name, "changeType": p["changeType"],
                  "recordIds": [ids.encode(obj.key_prefix, k) for k in p.get("recordKeys", [])],
                  "changedFields": p.get("changedFields", []), "commitTimestamp": p.get("commitTimestamp"),
                  "transactionKey": key, "sequenceNumber": 1, "changeOrigin": "com/keel", "commitNumber": oid}
        out.append((int(oid), {"schema": f"{obj.api_name}ChangeEvent",
                               "payload": {"ChangeEventHeader": header}, "event": {"replayId": int(oid)}}))
    return out


def get_position(conn: Connection, subscriber: str) -> int | None:
    v = conn.execute(sa.select(cdc_positions.c.position).where(cdc_positions.c.subscriber == subscriber)).scalar()
    return None if v is None else int(v)


def set_position(conn: Connection, subscriber: str, position: int, now: datetime) -> None:
    t = cdc_positions
    if not conn.execute(sa.update(t).where(t.c.subscriber == subscriber)
                        .values(position=position, updated_date=now)).rowcount:
        conn.execute(sa.insert(t).values(subscriber=subscriber, position=position, updated_date=now))
