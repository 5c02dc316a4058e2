"""The outbox dispatcher: delivers email and webhook rows after commit, at least once.

Claiming marks rows ``sending`` with a lease (``next_attempt_at`` = now + lease) in a short transaction; on
PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so several workers share the queue without blocking, and on
SQLite ``BEGIN IMMEDIATE`` makes the claim the single writer's. A worker that dies mid-delivery leaves its rows
``sending``; when the lease runs out any worker claims them again, with the same idempotency key.

Failures back off exponentially (``retry_base_seconds * 2**attempts``) up to ``outbox_max_attempts``, then the row
becomes ``dead`` (listed and retried by administrators through services). A per-endpoint circuit breaker stops a
dead endpoint from using every attempt of every message: while open, that endpoint's rows are pushed back without
spending an attempt, and the others flow.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.automation.outbox import DELIVERABLE, EMAIL, WEBHOOK
from keel.automation.senders import DeliveryError, SmtpSender, WebhookSender
from keel.storage import system as S

if TYPE_CHECKING:
    from keel.context import Context

log = logging.getLogger("keel.automation.dispatcher")
SENDING, DELIVERED, DEAD, PENDING = "sending", "delivered", "dead", "pending"


class Sender(Protocol):
    def endpoint(self, payload: Mapping[str, Any]) -> str: ...

    def send(self, payload: Mapping[str, Any], key: str) -> None: ...


@dataclass
class Breaker:
    """Consecutive failures per endpoint; ``threshold`` of them open the circuit for ``cooldown`` seconds."""

    threshold: int = 5
    cooldown: float = 30.0
    failures: dict[str, int] = field(default_factory=dict)
    open_until: dict[str, float] = field(default_factory=dict)

    def is_open(self, endpoint: str, now: float) -> bool:
        return self.open_until.get(endpoint, 0.0) > now

    def record(self, endpoint: str, ok: bool, now: float) -> None:
        if ok:
            self.failures.pop(endpoint, None)
            self.open_until.pop(endpoint, None)
            return
        n = self.failures[endpoint] = self.failures.get(endpoint, 0) + 1
        if n >= self.threshold:
            self.open_until[endpoint] = now + self.cooldown


@dataclass
class Stats:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0


class Dispatcher:
    def __init__(self, ctx: Context, senders: Mapping[str, Sender] | None = None, *, batch: int = 50) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.senders: Mapping[str, Sender] = senders or {EMAIL: SmtpSender(s), WEBHOOK: WebhookSender(s)}
        self.batch = batch
        self.breaker = Breaker(s.circuit_failure_threshold, float(s.circuit_cooldown_seconds))
        self.stats = Stats()

    def claim(self) -> list[dict[str, Any]]:
        ctx = self.ctx
        now = ctx.clock()
        lease = now + dt.timedelta(seconds=ctx.settings.outbox_lease_seconds)
        o = S.outbox
        with ctx.db.transaction() as conn:
            q = (sa.select(o).where(o.c.topic.in_(DELIVERABLE), o.c.state.in_((PENDING, SENDING)),
                                    o.c.next_attempt_at <= now).order_by(o.c.next_attempt_at, o.c.id)
                 .limit(self.batch))
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = [dict(r) for r in conn.execute(q).mappings()]
            if rows:
                conn.execute(sa.update(o).where(o.c.id.in_([r["id"] for r in rows]))
                             .values(state=SENDING, next_attempt_at=lease))
            _publish_changes(conn)
        return rows

    def run_once(self) -> int:
        """Claim one batch and deliver it; returns the number of rows handled."""
        rows = self.claim()
        try:
            for row in rows:
                self._deliver(row)
        finally:
            self.close_senders()
        return len(rows)

    def close_senders(self) -> None:
        """End connections a sender kept open for the round (SMTP), so none sits idle between polls."""
        for sender in self.senders.values():
            close = getattr(sender, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing is best effort; the next round opens a fresh connection
                    log.warning("closing a sender failed", exc_info=True)

    def drain(self, max_rounds: int = 1000) -> Stats:
        for _ in range(max_rounds):
            if not self.run_once():
                break
        return self.stats

    def _deliver(self, row: dict[str, Any]) -> None:
        payload = orjson.loads(row["payload"])
        sender = self.senders.get(row["topic"])
        if sender is None:
            self._finish(row, DEAD, f"no sender for topic {row['topic']}")
            return
        if "batch" in payload:
            self._deliver_batch(row, payload["batch"], sender)
            return
        endpoint = sender.endpoint(payload)
        mono = time.monotonic()
        if self.breaker.is_open(endpoint, mono):
            self.stats.deferred += 1
            wait = self.breaker.open_until[endpoint] - mono
            self._finish(row, PENDING, "circuit open", delay=wait, count=False)
            return
        try:
            sender.send(payload, row["idempotency_key"])
        except DeliveryError as e:
            self.breaker.record(endpoint, False, time.monotonic())
            attempts = row["attempts"] + 1
            if e.permanent or attempts >= self.ctx.settings.outbox_max_attempts:
                self.stats.dead += 1
                self._finish(row, DEAD, str(e))
            else:
                self.stats.failed += 1
                delay = self.ctx.settings.retry_base_seconds * (2 ** (attempts - 1))
                self._finish(row, PENDING, str(e), delay=delay)
            return
        except Exception as e:  # a bug in a sender must not kill the worker; retry like a transient failure
            log.exception("sender failed")
            self._finish(row, PENDING, f"{type(e).__name__}: {e}", delay=self.ctx.settings.retry_base_seconds)
            return
        self.breaker.record(endpoint, True, time.monotonic())
        self.stats.delivered += 1
        self._finish(row, DELIVERED, None)

    def _deliver_batch(self, row: dict[str, Any], messages: list[dict[str, Any]], sender: Sender) -> None:
        """Send a batch row's messages one by one (each with its own key). What was sent leaves the row; what
        failed for good moves to a dead row of its own; what failed for now stays, retried with backoff like a
        single message. A crash mid-row resends the row, with the same keys."""
        mono = time.monotonic()
        endpoint = sender.endpoint(messages[0])
        if self.breaker.is_open(endpoint, mono):
            self.stats.deferred += 1
            self._finish(row, PENDING, "circuit open", delay=self.breaker.open_until[endpoint] - mono, count=False)
            return
        retry: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        errors: list[str] = []
        for i, m in enumerate(messages):
            if self.breaker.is_open(endpoint, time.monotonic()):
                retry.extend(messages[i:])  # the endpoint went down mid-row: keep the rest for later
                break
            try:
                sender.send(m, str(m["key"]))
            except DeliveryError as e:
                self.breaker.record(endpoint, False, time.monotonic())
                errors.append(str(e))
                (dead if e.permanent else retry).append({**m, "error": str(e)})
                continue
            except Exception as e:  # a bug in a sender must not kill the worker; retry like a transient failure
                log.exception("sender failed")
                errors.append(f"{type(e).__name__}: {e}")
                retry.append(m)
                continue
            self.breaker.record(endpoint, True, time.monotonic())
            self.stats.delivered += 1
        attempts = row["attempts"] + 1
        if retry and attempts >= self.ctx.settings.outbox_max_attempts:
            dead, retry = dead + retry, []
        self.stats.dead += len(dead)
        self.stats.failed += len(retry)
        error = errors[-1] if errors else None
        with self.ctx.db.transaction() as conn:
            if dead and retry:  # the dead part becomes a row of its own, listed and retried by administrators
                new = {k: v for k, v in row.items() if k != "id"}
                new.update(payload=orjson.dumps({"batch": dead}).decode(), state=DEAD, attempts=attempts,
                           last_error=error, idempotency_key=f"{row['idempotency_key']}-dead-{attempts}")
                conn.execute(sa.insert(S.outbox).values(new))
            left = retry or dead
            state = PENDING if retry else DEAD if dead else DELIVERED
            values: dict[str, Any] = {"state": state, "last_error": error, "attempts": attempts}
            if left:
                values["payload"] = orjson.dumps({"batch": left}).decode()
            if state == PENDING:
                delay = self.ctx.settings.retry_base_seconds * (2 ** (attempts - 1))
                values["next_attempt_at"] = self.ctx.clock() + dt.timedelta(seconds=delay)
            conn.execute(sa.update(S.outbox).where(S.outbox.c.id == row["id"], S.outbox.c.state == SENDING)
                         .values(values))

    def _finish(self, row: dict[str, Any], state: str, error: str | None, *, delay: float = 0.0,
                count: bool = True) -> None:
        o = S.outbox
        values: dict[str, Any] = {"state": state, "last_error": error}
        if count:
            values["attempts"] = row["attempts"] + 1
        if state == PENDING:
            values["next_attempt_at"] = self.ctx.clock() + dt.timedelta(seconds=delay)
        with self.ctx.db.transaction() as conn:
            conn.execute(sa.update(o).where(o.c.id == row["id"], o.c.state == SENDING).values(values))

    def run_forever(self, stop: threading.Event, *, fire_scheduled: Any = None) -> None:
        """Poll until ``stop`` is set; ``fire_scheduled(ctx)`` runs due scheduled paths on each round."""
        interval = self.ctx.settings.dispatcher_poll_ms / 1000
        while not stop.is_set():
            try:
                busy = self.run_once()
                if fire_scheduled is not None:
                    busy += fire_scheduled(self.ctx)
            except Exception:
                log.exception("dispatcher round failed")
                busy = 0
            if not busy:
                stop.wait(interval)


def _publish_changes(conn: Connection) -> None:
    """Change events are read by the CDC stream from the outbox itself; mark them published so the due index
    stays small for the deliverable topics."""
    o = S.outbox
    conn.execute(sa.update(o).where(o.c.topic == "change", o.c.state == PENDING).values(state="published"))


def dead_letters(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Dead rows, newest first, each with ``messages``: how many messages it holds (a batch row holds several)."""
    o = S.outbox
    q = sa.select(o).where(o.c.state == DEAD).order_by(o.c.id.desc()).limit(limit)
    out = []
    for r in conn.execute(q).mappings():
        row = dict(r)
        batch = orjson.loads(row["payload"]).get("batch") if row["payload"].startswith('{"batch"') else None
        row["messages"] = len(batch) if isinstance(batch, list) else 1
        out.append(row)
    return out


def retry(conn: Connection, outbox_ids: list[int], now: dt.datetime) -> int:
    o = S.outbox
    return int(conn.execute(sa.update(o).where(o.c.id.in_(outbox_ids), o.c.state == DEAD)
                            .values(state=PENDING, attempts=0, next_attempt_at=now, last_error=None)).rowcount)
