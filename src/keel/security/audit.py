"""The append-only security audit log (ASVS V16): logins, failures, lockouts, permission changes, exports,
system-context use and reads of sensitive fields. ``keel_audit`` refuses UPDATE and DELETE by trigger, so not even
an administrator's SQL mistake rewrites history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.storage import system as S


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def audit(conn: Connection, action: str, *, actor_id: int | None, object: str | None = None,
          record_id: int | None = None, result: str = "success", detail: object = None,
          on_behalf_of_id: int | None = None, at: datetime | None = None) -> None:
    """Append one decision to the log, in the caller's transaction (a rolled-back change leaves no entry;
    failures that must be kept, such as a bad password, are written in their own transaction by the caller)."""
    text = detail if isinstance(detail, str) or detail is None else orjson.dumps(detail, default=str).decode()
    conn.execute(sa.insert(S.audit).values(created_date=at or _now(), actor_id=actor_id,
                                           on_behalf_of_id=on_behalf_of_id, action=action, object=object,
                                           record_id=record_id, result=result, detail=text))


def audit_sensitive_read(conn: Connection, *, actor_id: int, object: str, fields: Iterable[str],
                         count: int, ids: Sequence[str] = (), record_id: int | None = None, surface: str = "record",
                         via: Sequence[str] = (), aggregate: bool = False, at: datetime | None = None) -> None:
    """One row per read of fields marked ``sensitive`` (SSN, medical, polygraph): who read which fields of how
    many records of one object, and when (S28). A read is a request, a page or a job page, never a record, so a
    2,000-row page costs one insert: ``detail`` names the fields, the count, the first ids (the caller bounds them),
    the surface and the relationship paths they were reached through; ``record_id`` is set for a one-record read.
    An aggregate over a sensitive field (``MAX(Salary__c)``, a GROUP BY) is a read of it with ``aggregate`` set."""
    names = sorted(fields)
    if not names:
        return
    detail: dict[str, Any] = {"fields": names, "count": count, "ids": list(ids), "surface": surface}
    if via:
        detail["via"] = list(via)
    if aggregate:
        detail["aggregate"] = True
    audit(conn, "sensitive_read", actor_id=actor_id, object=object, record_id=record_id, detail=detail, at=at)


def audit_rows(conn: Connection, *, action: str | None = None, actor_id: int | None = None) -> list[dict[str, object]]:
    q = sa.select(S.audit).order_by(S.audit.c.id)
    if action is not None:
        q = q.where(S.audit.c.action == action)
    if actor_id is not None:
        q = q.where(S.audit.c.actor_id == actor_id)
    return [dict(r) for r in conn.execute(q).mappings()]
