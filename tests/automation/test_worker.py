"""``keel worker`` killed with SIGKILL mid-delivery: after a restart every message is delivered, and any
duplicates carry the same idempotency key. Also: backoff, dead letters and the admin retry action."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import sqlalchemy as sa

from keel.automation.dispatcher import Dispatcher
from keel.automation.senders import DeliveryError
from keel.context import Context
from keel.records import save_many
from keel.services import automation as A
from keel.storage import system as S
from tests.automation.conftest import Clock, Hooks, Inbox


def _rows(ctx: Context) -> list[dict]:
    with ctx.db.read() as conn:
        o = S.outbox
        return [dict(r) for r in conn.execute(sa.select(o).where(o.c.topic.in_(("email", "webhook")))).mappings()]


def _worker(db_url: str, smtp_port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, KEEL_SMTP_HOST="127.0.0.1", KEEL_SMTP_PORT=str(smtp_port), KEEL_OUTBOX_LEASE_SECONDS="1",
               KEEL_DISPATCHER_POLL_MS="100", KEEL_RETRY_BASE_SECONDS="1", KEEL_SECRET_KEY="k")
    return subprocess.Popen([sys.executable, "-m", "keel.cli.main", "worker", "--db", db_url], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(pred: Callable[[], bool], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_sigkill_mid_delivery_loses_nothing(auto: Context, db_url: str, smtp: tuple[Inbox, int],
                                            receiver: tuple[Hooks, str]) -> None:
    hooks, _ = receiver
    hooks.delay = 0.1
    save_many(auto, "Applicant__c", [{"Name": f"A{i}", "Stage__c": "Offer", "Email__c": f"a{i}@example.com"}
                                     for i in range(15)])
    keys = {r["idempotency_key"] for r in _rows(auto)}
    assert len(keys) == 30
    w = _worker(db_url, smtp[1])
    try:
        _wait(lambda: len(hooks.requests) >= 3)
        w.send_signal(signal.SIGKILL)
        w.wait(10)
        assert any(r["state"] == "sending" for r in _rows(auto)), "killed before any delivery was in flight"
    finally:
        if w.poll() is None:
            w.kill()
    w = _worker(db_url, smtp[1])
    try:
        _wait(lambda: all(r["state"] == "delivered" for r in _rows(auto)))
    finally:
        w.send_signal(signal.SIGTERM)
        w.wait(10)
    got = [h["Idempotency-Key"] for h, _ in hooks.requests]
    got += [m["X-Keel-Idempotency-Key"] for m in smtp[0].messages]
    assert set(got) == keys  # every message arrived; a duplicate has the same key as its original
    assert len(got) >= len(keys)


def test_backoff_dead_letter_and_retry(auto: Context, clock: Clock) -> None:
    class Failing:
        calls = 0

        def endpoint(self, payload: object) -> str:
            return "x"

        def send(self, payload: object, key: str) -> None:
            Failing.calls += 1
            raise DeliveryError("down")

    class Ok:
        def endpoint(self, payload: object) -> str:
            return "y"

        def send(self, payload: object, key: str) -> None:
            pass

    save_many(auto, "Applicant__c", [{"Name": "Z", "Stage__c": "Offer", "Email__c": "z@example.com"}])
    d = Dispatcher(auto, {"email": Failing(), "webhook": Ok()})
    d.drain()
    assert {r["topic"]: r["state"] for r in _rows(auto)} == {"email": "pending", "webhook": "delivered"}
    email = next(r for r in _rows(auto) if r["topic"] == "email")
    assert email["next_attempt_at"] == clock.now + __import__("datetime").timedelta(seconds=1)
    for step in (1, 2):  # 1 s, then 2 s later (exponential), then dead after outbox_max_attempts=3
        clock.advance(seconds=step)
        d.drain()
    assert Failing.calls == 3
    dead = A.list_dead_letters(auto)
    assert [r["state"] for r in dead] == ["dead"] and dead[0]["last_error"] == "down"
    assert A.retry_dead_letters(auto, [dead[0]["id"]]) == 1
    Dispatcher(auto, {"email": Ok(), "webhook": Ok()}).drain()
    assert all(r["state"] == "delivered" for r in _rows(auto))


def test_circuit_breaker_isolates_a_dead_endpoint(auto: Context) -> None:
    from keel.automation.senders import WebhookSender

    sent: list[str] = []

    class Mixed(WebhookSender):
        def send(self, payload: dict, key: str) -> None:  # type: ignore[override]
            if "dead" in payload["url"]:
                raise DeliveryError("refused")
            sent.append(key)

    from keel.automation import outbox

    with auto.db.transaction() as conn:
        outbox.enqueue(conn, [outbox.message("webhook", {"url": f"http://{h}.invalid/x", "body": "{}"}, auto.clock())
                              for h in ["dead"] * 8 + ["alive"] * 4])
    d = Dispatcher(auto, {"webhook": Mixed(auto.settings)})
    d.breaker.threshold = 2
    d.drain()
    assert len(sent) == 4
    assert d.stats.deferred >= 6  # after two failures the dead endpoint stops spending attempts
