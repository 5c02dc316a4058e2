"""Email alerts fired for many records of one save are written as batch rows and delivered message by message:
sent messages leave the row, refused ones move to a dead row, the rest retry with backoff."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from keel.automation import outbox
from keel.context import Context
from keel.records import save_many
from keel.services import automation as A
from keel.storage import system as S
from tests.automation.conftest import Clock, Inbox


def _email_rows(ctx: Context) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        o = S.outbox
        q = sa.select(o).where(o.c.topic == "email").order_by(o.c.id)
        return [dict(r) for r in conn.execute(q).mappings()]


def test_batch_rows_chunk_and_key_every_message() -> None:
    msgs = [(n, {"to": [f"p{n}@example.com"], "subject": "s", "body": "b"}) for n in range(7)]
    rows = outbox.batch_rows(4, msgs, "2026-01-01 00:00:00.000000", min_batch=3, size=3)
    batches = [orjson.loads(r[3])["batch"] for r in rows]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert all(r[0] == "email" and r[1] == 4 and r[2] is None and r[5] == "pending" for r in rows)
    keys = [m["key"] for b in batches for m in b]
    assert len(set(keys)) == 7
    for r, b in zip(rows, batches, strict=True):  # a message's key is its row's key and its place in the row
        assert all(m["key"].startswith(r[4] + "-") for m in b)
    assert [m["record_id"] for b in batches for m in b] == list(range(7))
    # below the threshold: one row per message, keyed per row, with its record id
    few = outbox.batch_rows(4, msgs[:2], "2026-01-01 00:00:00.000000", min_batch=3, size=3)
    assert [(r[2], orjson.loads(r[3])["to"]) for r in few] == [(0, ["p0@example.com"]), (1, ["p1@example.com"])]


class Picky(Inbox):
    """Refuses ``bad*`` recipients for good (550) and answers ``slow*`` messages with 451 while ``slow`` is set."""

    slow = True

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bad"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.slow and any(a.startswith("slow") for a in envelope.rcpt_tos):
            return "451 try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def picky(auto: Context) -> Any:
    from dataclasses import replace

    from tests.automation.conftest import smtp_server

    inbox = Picky()
    with smtp_server(inbox) as port:
        yield replace(auto, settings=replace(auto.settings, smtp_port=port)), inbox


def test_a_bulk_save_alerts_through_batch_rows(picky: tuple[Context, Picky], clock: Clock) -> None:
    ctx, inbox = picky
    emails = [f"ok{i}@example.com" for i in range(20)] + ["bad1@example.com", "bad2@example.com"] + \
        [f"slow{i}@example.com" for i in range(3)]
    saved = save_many(ctx, "Applicant__c", [{"Name": f"A{i}", "Stage__c": "Offer", "Email__c": e}
                                            for i, e in enumerate(emails)])
    rows = _email_rows(ctx)
    assert len(rows) == 1 and rows[0]["record_id"] is None
    batch = orjson.loads(rows[0]["payload"])["batch"]
    assert [m["to"] for m in batch] == [[e] for e in emails]
    with ctx.db.read() as conn:
        prefix = ctx.schema(conn).get_object("Applicant__c").key_prefix
    from keel.storage import ids

    assert [ids.encode(prefix, m["record_id"]) for m in batch] == [r.id for r in saved]
    keys = {m["to"][0]: m["key"] for m in batch}

    stats = A.deliver_pending(ctx)
    assert stats.delivered == 20 + 25  # 20 emails and the Offer flow's 25 webhooks
    assert sorted(m["To"] for m in inbox.messages) == sorted(emails[:20])
    assert {m["To"]: m["X-Keel-Idempotency-Key"] for m in inbox.messages} == {e: keys[e] for e in emails[:20]}
    rows = _email_rows(ctx)
    assert [r["state"] for r in rows] == ["pending", "dead"]
    pending, dead = (orjson.loads(r["payload"])["batch"] for r in rows)
    assert [m["to"][0] for m in pending] == emails[22:]  # what failed for now stays, with its key
    assert {m["key"] for m in pending} == {keys[e] for e in emails[22:]}
    assert [m["to"][0] for m in dead] == emails[20:22] and all("refused" in m["error"] for m in dead)
    assert "451" in (rows[0]["last_error"] or "")

    inbox.slow = False
    clock.advance(seconds=1)  # the backoff of the first failed attempt
    assert A.deliver_pending(ctx).delivered == 3
    assert [r["state"] for r in _email_rows(ctx)] == ["delivered", "dead"]
    got = {m["To"]: m["X-Keel-Idempotency-Key"] for m in inbox.messages}
    assert got == {e: keys[e] for e in emails[:20] + emails[22:]}  # each sent once, with its own key

    # the administrator sees the refused part as a dead letter and can queue it again
    dead_row = next(r for r in A.list_dead_letters(ctx) if r["topic"] == "email")
    assert dead_row["messages"] == 2
    assert A.retry_dead_letters(ctx, [dead_row["id"]]) == 1
    A.deliver_pending(ctx)
    assert [r["state"] for r in _email_rows(ctx)] == ["delivered", "dead"]  # still refused: dead again
    assert len(inbox.messages) == 23
