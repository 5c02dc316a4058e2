"""Automation fixtures: a recruiting/invoice package with flows and an approval process, a real SMTP server
(aiosmtpd) and a real HTTP webhook receiver on loopback, and a controllable clock."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.context import Context
from keel.services.automation import wire_automation
from keel.services.metadata import apply_package
from tests.livehttp import free_port

OBJECTS: list[dict[str, Any]] = [
    {"object": "Position__c", "sharing": "public_read", "name_field": {"type": "text", "length": 80},
     "fields": [{"name": "Department__c", "type": "text", "length": 80}]},
    {"object": "Applicant__c", "sharing": "public_read_write", "name_field": {"type": "text", "length": 80},
     "fields": [
         {"name": "Email__c", "type": "email"},
         {"name": "Stage__c", "type": "picklist", "values": ["Applied", "Interview", "Offer", "Hired", "Rejected"]},
         {"name": "Position__c", "type": "lookup", "to": "Position__c", "relationship_name": "Position__r",
          "child_relationship_name": "Applicants__r"},
         {"name": "Flag__c", "type": "text", "length": 80},
         {"name": "Counter__c", "type": "number", "precision": 8, "scale": 0},
         {"name": "Start_Date__c", "type": "date"},
         {"name": "Ssn__c", "type": "text", "length": 11},
     ]},
    {"object": "Condition__c", "sharing": "public_read_write", "name_field": {"type": "text", "length": 80},
     "fields": [
         {"name": "Applicant__c", "type": "lookup", "to": "Applicant__c", "relationship_name": "Applicant__r",
          "child_relationship_name": "Conditions__r"},
         {"name": "Detail__c", "type": "text", "length": 200, "required": True},
     ]},
    {"object": "Invoice__c", "sharing": "public_read_write", "name_field": {"type": "text", "length": 80},
     "fields": [
         {"name": "Amount__c", "type": "currency", "precision": 12, "scale": 2},
         {"name": "Status__c", "type": "picklist", "values": ["Draft", "Submitted", "Approved", "Rejected"]},
         {"name": "Memo__c", "type": "text", "length": 200},
     ]},
]


def flows(webhook_url: str) -> dict[str, list[dict[str, Any]]]:
    return {
        "flows": [
            {"flow": "Offer_Made", "object": "Applicant__c", "event": "created_or_updated",
             "condition": "ISPICKVAL(Stage__c, 'Offer')", "only_when_changed": True,
             "before_save": {"set": {"Flag__c": "'offer for ' & Name"}},
             "actions": [
                 {"email": {"to": "{{ record.Email__c }}", "subject": "Offer: {{ record.Position__r.Name }}",
                            "body": "Dear {{ record.Name }}, ssn={{ record.Ssn__c }}"}},
                 {"webhook": {"url": webhook_url, "secret": "s3cret", "fields": ["Name", "Stage__c"]}},
             ]},
            {"flow": "Interview_Prep", "object": "Applicant__c", "event": "updated",
             "condition": "ISPICKVAL(Stage__c, 'Interview')", "only_when_changed": True,
             "actions": [{"create": {"object": "Condition__c", "values": {
                 "Name": "'Prep ' & Name", "Applicant__c": "Id",
                 "Detail__c": "IF(CONTAINS(Name, 'Broken'), '', 'Prepare interview for ' & Name)"}}}]},
            {"flow": "Start_Reminder", "object": "Applicant__c", "event": "created_or_updated",
             "condition": "ISPICKVAL(Stage__c, 'Hired')",
             "scheduled_paths": [{"name": "Two_Days_Before", "field": "Start_Date__c", "offset": "-2 days",
                                  "actions": [{"email": {"to": "hr@example.com",
                                                         "subject": "{{ record.Name }} starts soon",
                                                         "body": "Start date {{ record.Start_Date__c }}"}}]},
                                 {"name": "After_Hire", "offset": "3 hours",
                                  "actions": [{"set": {"Flag__c": "'welcomed'"}}]}]},
            {"flow": "Account_Note", "object": "Account", "event": "created",
             "condition": "ISPICKVAL(Type, 'Charity')",
             "actions": [{"note": {"title": "Welcome {{ record.Name }}", "body": "Charity onboarded."}}]},
            {"flow": "Loop", "object": "Account", "event": "updated", "condition": "Description = 'loop'",
             "actions": [{"update": {"target": "self", "values": {"NumberOfEmployees": "NumberOfEmployees + 1"}}}]},
            {"flow": "Deleted_Hook", "object": "Position__c", "event": "deleted",
             "actions": [{"webhook": {"url": webhook_url, "fields": ["Name"]}}]},
        ],
        "approvals": [
            {"approval": "Invoice_Approval", "object": "Invoice__c", "entry_criteria": "Amount__c > 1000",
             "on_submit": [{"set": {"Status__c": "'Submitted'"}}],
             "on_approve": [{"set": {"Status__c": "'Approved'"}},
                            {"email": {"to": "ap@example.com", "subject": "Approved {{ record.Name }}",
                                       "body": "ok"}}],
             "on_reject": [{"set": {"Status__c": "'Rejected'"}}],
             "on_recall": [{"set": {"Status__c": "'Draft'"}}],
             "steps": [
                 {"name": "Manager", "approver": "manager"},
                 {"name": "Finance", "approvers": [{"queue": "Finance"}], "mode": "unanimous"},
                 {"name": "CFO", "approver": {"user": "cfo@example.com"}, "criteria": "Amount__c > 5000"},
             ]},
        ],
    }


def write_package(root: Path, webhook_url: str) -> Path:
    (root / "objects").mkdir(parents=True, exist_ok=True)
    for d in OBJECTS:
        (root / "objects" / f"{d['object']}.yaml").write_text(yaml.safe_dump(d))
    defs = flows(webhook_url)
    for folder in ("flows", "approvals"):
        (root / folder).mkdir(exist_ok=True)
        key = "flow" if folder == "flows" else "approval"
        for d in defs[folder]:
            (root / folder / f"{d[key]}.yaml").write_text(yaml.safe_dump(d))
    return root


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@contextmanager
def smtp_server(handler: Any) -> Iterator[int]:
    """A local aiosmtpd server with ``handler`` on a free port, for as long as the block runs; yields the port."""
    from aiosmtpd.controller import Controller

    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port
    finally:
        ctl.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        yield inbox, port


@dataclass
class Hooks:
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0


@pytest.fixture
def receiver() -> Iterator[tuple[Hooks, str]]:
    got = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            import time

            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if got.delay:
                time.sleep(got.delay)
            got.requests.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(got.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield got, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2026, 3, 2, 9, 0, 0))


@pytest.fixture
def auto(org: Context, tmp_path: Path, smtp: tuple[Inbox, int], receiver: tuple[Hooks, str],
         clock: Clock) -> Context:
    """The organisation with automation wired, the package deployed, SMTP pointed at the sink, and the clock."""
    _, port = smtp
    _, url = receiver
    settings = replace(org.settings, smtp_port=port, smtp_host="127.0.0.1", retry_base_seconds=1,
                       outbox_max_attempts=3, secret_key="fallback")
    ctx = wire_automation(replace(org, settings=settings, clock=clock))
    apply_package(ctx, write_package(tmp_path / "pkg", url))
    return ctx
