"""Flows run on the Bulk API 2.0 path, in the server as ``keel up`` / ``keel serve`` compose it.

The server here is ``build_app`` (the one ASGI app of ``keel serve``, with its bulk worker and outbox dispatcher
started by the ASGI lifespan) under uvicorn on loopback. An ingest job goes in over HTTP; the bulk worker saves
the rows through the lifecycle, so the before-save update, the child create and the email alert all run, and the
in-process dispatcher delivers the emails to a real SMTP server (aiosmtpd). A row that fails validation gets no
child and no email.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.automation.conftest import Inbox, smtp_server
from tests.bulk.helpers import parse_csv, to_csv, wait_job
from tests.conftest import ADMIN, ADMIN_PASSWORD
from tests.livehttp import serving

from keel.cli.asgi import build_app
from keel.context import Context
from keel.security import sessions
from keel.services.metadata import apply_package
from keel.services.query import query

OBJECTS: list[dict[str, Any]] = [
    {"object": "Gift__c", "sharing": "public_read_write", "name_field": {"type": "text", "length": 80},
     "fields": [{"name": "Amount__c", "type": "currency", "precision": 12, "scale": 2},
                {"name": "Donor_Email__c", "type": "email"},
                {"name": "Tier__c", "type": "text", "length": 20}],
     "validation_rules": [{"name": "Positive", "condition": "Amount__c < 0", "message": "Amount must be positive",
                           "field": "Amount__c"}]},
    {"object": "Gift_Task__c", "sharing": "public_read_write", "name_field": {"type": "text", "length": 80},
     "fields": [{"name": "Gift__c", "type": "lookup", "to": "Gift__c", "relationship_name": "Gift__r",
                 "child_relationship_name": "Tasks__r"}]},
]
FLOWS: list[dict[str, Any]] = [
    {"flow": "Tier", "object": "Gift__c", "event": "created",
     "before_save": {"set": {"Tier__c": "IF(Amount__c > 500, 'major', 'regular')"}}},
    {"flow": "Thank_Task", "object": "Gift__c", "event": "created",
     "actions": [{"create": {"object": "Gift_Task__c", "values": {"Name": "'Thank ' & Name", "Gift__c": "Id"}}}]},
    {"flow": "Receipt", "object": "Gift__c", "event": "created",
     "actions": [{"email": {"to": "{{ record.Donor_Email__c }}", "subject": "Thank you, {{ record.Name }}",
                            "body": "We received {{ record.Amount__c }}."}}]},
]
V = "v59.0"


def write_package(root: Path) -> Path:
    for folder, docs, key in (("objects", OBJECTS, "object"), ("flows", FLOWS, "flow")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for d in docs:
            (root / folder / f"{d[key]}.yaml").write_text(yaml.safe_dump(d))
    return root


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        yield inbox, port


class DispatcherErrors(logging.Handler):
    """Errors the in-process dispatcher logs (it logs and carries on, so only its log shows a failing round)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.getMessage()} {record.exc_text or ''}".strip())


def token(ctx: Context, base: str) -> str:
    with ctx.db.transaction() as conn:
        admin = sessions._find_user(conn, ctx, ADMIN)
        assert admin is not None
        client_id, secret = sessions.create_connected_app(ctx, conn, "bulk flows", run_as_user_id=admin[0])
    r = httpx.post(f"{base}/services/oauth2/token", data={"grant_type": "password", "username": ADMIN,
                                                          "password": ADMIN_PASSWORD, "client_id": client_id,
                                                          "client_secret": secret})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_bulk_ingest_runs_flows_and_the_server_delivers_their_email(org: Context, tmp_path: Path,
                                                                      smtp_sink: tuple[Inbox, int]) -> None:
    inbox, port = smtp_sink
    ctx = replace(org, settings=replace(org.settings, smtp_host="127.0.0.1", smtp_port=port, dispatcher_poll_ms=50,
                                        api_requests_per_minute=100_000))
    apply_package(ctx, write_package(tmp_path / "pkg"))
    errors = DispatcherErrors()
    log = logging.getLogger("keel.automation.dispatcher")
    log.addHandler(errors)
    try:
        with serving(build_app(ctx), lifespan="on") as base:
            rows = [{"Name": f"G{i}", "Amount__c": str(i * 100), "Donor_Email__c": f"d{i}@example.com"}
                    for i in range(12)]
            rows[5]["Amount__c"] = "-1"  # fails the validation rule: no child, no email
            with httpx.Client(base_url=f"{base}/services/data/{V}", timeout=60,
                              headers={"Authorization": f"Bearer {token(ctx, base)}"}) as http:
                r = http.post("/jobs/ingest", json={"object": "Gift__c", "operation": "insert", "contentType": "CSV"})
                assert r.status_code == 200, r.text
                job = r.json()["id"]
                assert http.put(f"/jobs/ingest/{job}/batches", content=to_csv(rows),
                                headers={"Content-Type": "text/csv"}).status_code == 201
                assert http.patch(f"/jobs/ingest/{job}", json={"state": "UploadComplete"}).status_code == 200
                info = wait_job(http, job, timeout=120)
                assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == \
                    ("JobComplete", 12, 1), info
                failed = parse_csv(http.get(f"/jobs/ingest/{job}/failedResults").text)
                assert [f["Name"] for f in failed] == ["G5"]
            gifts = {g["Name"]: g for g in query(ctx, "SELECT Id, Name, Tier__c FROM Gift__c")["records"]}
            assert set(gifts) == {f"G{i}" for i in range(12) if i != 5}
            assert {n: g["Tier__c"] for n, g in gifts.items()} == \
                {f"G{i}": ("major" if i * 100 > 500 else "regular") for i in range(12) if i != 5}
            tasks = query(ctx, "SELECT Name, Gift__c FROM Gift_Task__c")["records"]
            assert sorted((t["Name"], t["Gift__c"]) for t in tasks) == sorted((f"Thank {n}", g["Id"])
                                                                            for n, g in gifts.items())
            deadline = time.time() + 60  # the server's own dispatcher delivers after commit
            while len(inbox.messages) < 11 and time.time() < deadline:
                time.sleep(0.1)
            got = sorted((m["To"], m["Subject"]) for m in inbox.messages)
            assert got == sorted((f"d{i}@example.com", f"Thank you, G{i}") for i in range(12) if i != 5)
    finally:
        log.removeHandler(errors)
    assert errors.messages == []
