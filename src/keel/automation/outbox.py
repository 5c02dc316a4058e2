"""Writing side effects as outbox rows in the caller's transaction: nothing leaves the process before COMMIT.

Every row gets its idempotency key here, once; retries and redeliveries after a crash reuse it, so receivers can
drop duplicates (email ``Message-ID``, webhook ``Idempotency-Key`` header).

An email alert that fires for many records of one save (a bulk load, a mass update) is written as rows of up to
``EMAIL_BATCH_SIZE`` messages (``{"batch": [message, ...]}``), each message carrying its own key (the row's key
and its position) and record id. One row instead of thousands keeps the outbox insert, its three indexes and the
dispatcher's claims off the save's critical path; the dispatcher delivers a batch message by message and keeps
in the row only what is left to send (see ``dispatcher``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from keel.storage import system as S

EMAIL = "email"
WEBHOOK = "webhook"
DELIVERABLE = (EMAIL, WEBHOOK)
EMAIL_BATCH_MIN = 20  # fewer messages than this are written one row each
EMAIL_BATCH_SIZE = 500  # messages per batch row: bounds what a crash mid-row sends twice


COLUMNS = ("topic", "object_id", "record_id", "payload", "idempotency_key", "state", "attempts", "next_attempt_at",
           "created_date")


def new_keys(n: int) -> list[str]:
    """``n`` unique idempotency keys of 32 hex digits: the time in microseconds, a counter, then 52 random bits.

    Keys made together sort together, so the unique index on them grows at its end instead of taking a random
    page per row (a third less CPU for the outbox insert of a bulk load with an email flow, more as the table
    grows). Receivers only compare keys; nothing relies on them being unpredictable."""
    head = f"{time.time_ns() // 1000:014x}"
    tail = os.urandom(7 * n).hex()
    return [f"{head}{i & 0xFFFFF:05x}{tail[14 * i:14 * i + 13]}" for i in range(n)]


def message(topic: str, payload: Mapping[str, Any], now: datetime, *, object_id: int | None = None,
            record_id: int | None = None, key: str | None = None) -> dict[str, Any]:
    return {"topic": topic, "object_id": object_id, "record_id": record_id,
            "payload": orjson.dumps(payload, default=str).decode(), "idempotency_key": key or new_keys(1)[0],
            "state": "pending", "attempts": 0, "next_attempt_at": now, "created_date": now}


def bind_datetime(conn: Connection, v: datetime) -> Any:
    """A datetime as the driver takes it: SQLite gets SQLAlchemy's own text form (reads go through SQLAlchemy's
    DateTime type), PostgreSQL the datetime itself."""
    if conn.dialect.name != "sqlite":
        return v
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}"
            f".{v.microsecond:06d}")


def enqueue(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        enqueue_tuples(conn, [tuple(bind_datetime(conn, v) if isinstance(v, datetime) else v
                                    for v in (r[c] for c in COLUMNS)) for r in rows])


def enqueue_tuples(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows in ``COLUMNS`` order, datetimes already in ``bind_datetime`` form, as one driver-level executemany:
    SQLAlchemy's per-row parameter processing cost more than building the rows on a bulk load with an email
    flow."""
    if rows:
        marks = ", ".join(("?" if conn.dialect.name == "sqlite" else "%s") for _ in COLUMNS)
        conn.exec_driver_sql(f"INSERT INTO {S.outbox.name} ({', '.join(COLUMNS)}) VALUES ({marks})", list(rows))


def split_addresses(values: Sequence[str]) -> list[str]:
    if len(values) == 1:  # the common case: one address, checked without building lists
        one = values[0].strip()
        if "@" in one and "," not in one and ";" not in one:
            return [one]
    out: list[str] = []
    for v in values:
        for part in str(v).replace(";", ",").split(","):
            part = part.strip()
            if part and "@" in part and part not in out:
                out.append(part)
    return out


def batch_rows(object_id: int, messages: Sequence[tuple[int | None, dict[str, Any]]], stamp: Any, *,
               min_batch: int = EMAIL_BATCH_MIN, size: int = EMAIL_BATCH_SIZE) -> list[tuple[Any, ...]]:
    """``(record id, payload)`` email messages as rows in ``COLUMNS`` order (``stamp`` in ``bind_datetime``
    form): one row each below ``min_batch`` messages, else rows of up to ``size`` messages."""
    dumps = orjson.dumps
    if len(messages) < min_batch:
        keys = new_keys(len(messages))
        return [(EMAIL, object_id, rid, dumps(m, default=str).decode(), k, "pending", 0, stamp, stamp)
                for (rid, m), k in zip(messages, keys, strict=True)]
    rows = []
    chunks = [messages[i:i + size] for i in range(0, len(messages), size)]
    for chunk, key in zip(chunks, new_keys(len(chunks)), strict=True):
        batch = []
        for i, (rid, m) in enumerate(chunk):
            m["key"] = f"{key}-{i:03d}"
            m["record_id"] = rid
            batch.append(m)
        rows.append((EMAIL, object_id, None, dumps({"batch": batch}, default=str).decode(), key, "pending", 0,
                     stamp, stamp))
    return rows
