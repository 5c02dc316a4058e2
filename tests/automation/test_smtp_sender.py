"""SMTP delivery keeps one connection for a dispatcher round, and a connection the server dropped while idle
costs no attempt: the message goes over a fresh one."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from keel.context import Context
from keel.records import save_many
from keel.services.automation import deliver_pending
from keel.settings import Settings
from tests.automation.conftest import smtp_server


@dataclass
class Peers:
    """Which client connection (peer address) carried each message."""

    seen: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen.append(session.peer)
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[tuple[Peers, int]]:
    peers = Peers()
    with smtp_server(peers) as port:
        yield peers, port


def test_a_round_of_emails_shares_one_connection(auto: Context, sink: tuple[Peers, int]) -> None:
    peers, port = sink
    save_many(auto, "Applicant__c", [{"Name": f"P{i}", "Stage__c": "Offer", "Email__c": f"p{i}@example.com"}
                                     for i in range(8)])
    ctx = replace(auto, settings=replace(auto.settings, smtp_port=port))
    assert deliver_pending(ctx).delivered >= 8  # the emails, and the webhooks to the test receiver
    assert len(peers.seen) == 8 and len(set(peers.seen)) == 1


def test_a_dropped_connection_is_replaced_without_losing_the_message(sink: tuple[Peers, int]) -> None:
    from keel.automation.senders import SmtpSender

    peers, port = sink
    sender = SmtpSender(Settings(smtp_host="127.0.0.1", smtp_port=port))
    msg = {"to": ["a@example.com"], "subject": "s", "body": "b"}
    sender.send(msg, "k1")
    assert sender._smtp is not None
    sender._smtp.sock.shutdown(socket.SHUT_RDWR)  # as if the server had dropped the idle connection
    sender.send(msg, "k2")
    sender.close()
    assert len(peers.seen) == 2 and peers.seen[0] != peers.seen[1]
