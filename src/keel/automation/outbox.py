"""Writing side effects as outbox rows in the caller's transaction: nothing leaves the process before COMMIT.

Every row gets its idempotency key here, once; retries and redeliveries after a crash reuse it, so receivers can
drop duplicates (email ``Message-ID``, webhook ``Idempotency-Key`` header).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.storage import system as S

EMAIL = "email"
WEBHOOK = "webhook"
DELIVERABLE = (EMAIL, WEBHOOK)


def message(topic: str, payload: Mapping[str, Any], now: datetime, *, object_id: int | None = None,
            record_id: int | None = None) -> dict[str, Any]:
    return {"topic": topic, "object_id": object_id, "record_id": record_id,
            "payload": orjson.dumps(payload, default=str).decode(), "idempotency_key": uuid.uuid4().hex,
            "state": "pending", "attempts": 0, "next_attempt_at": now, "created_date": now}


def enqueue(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(S.outbox), list(rows))


def split_addresses(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for part in str(v).replace(";", ",").split(","):
            part = part.strip()
            if part and "@" in part and part not in out:
                out.append(part)
    return out
