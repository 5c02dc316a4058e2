"""The in-process dispatcher of ``keel serve``: it fires scheduled paths and delivers email while the server runs,
and a whole run, through shutdown, logs no dispatcher error (the soak log once showed "Automation is not wired
into this context" from every round)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
import uvicorn

from keel.cli.asgi import build_app
from keel.context import Context
from keel.records import save_many
from keel.services.automation import pending_scheduled, start_dispatcher
from keel.services.query import query
from tests.automation.conftest import Clock, Inbox, free_port


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def dispatcher_errors() -> Iterator[Errors]:
    errors = Errors()
    log = logging.getLogger("keel.automation.dispatcher")
    log.addHandler(errors)
    try:
        yield errors
    finally:
        log.removeHandler(errors)


def _wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, what
        time.sleep(0.05)


def _flag(ctx: Context, rid: str | None) -> object:
    return query(ctx, f"SELECT Flag__c FROM Applicant__c WHERE Id = '{rid}'")["records"][0]["Flag__c"]


def test_serve_fires_scheduled_paths_and_shuts_down_without_dispatcher_errors(
        auto: Context, clock: Clock, smtp: tuple[Inbox, int], dispatcher_errors: Errors) -> None:
    ctx = replace(auto, settings=replace(auto.settings, dispatcher_poll_ms=50))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(ctx), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started, "the server did not start")
        hal = {"Name": "Hal", "Stage__c": "Hired", "Email__c": "hal@example.com"}
        rid = save_many(ctx, "Applicant__c", [hal])[0].id
        assert {r["path"] for r in pending_scheduled(ctx)} == {"After_Hire"}
        clock.advance(hours=4)  # After_Hire is due 3 hours after the trigger
        _wait(lambda: _flag(ctx, rid) == "welcomed", "the server's dispatcher did not fire the scheduled path")
        save_many(ctx, "Applicant__c", [{"Id": rid, "Stage__c": "Offer"}])  # the Offer flow queues an email
        _wait(lambda: len(smtp[0].messages) == 1, "the server's dispatcher did not deliver the email")
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()
    assert dispatcher_errors.messages == []


def test_a_dispatcher_started_on_an_unwired_context_still_fires(auto: Context, clock: Clock,
                                                                  dispatcher_errors: Errors) -> None:
    rid = save_many(auto, "Applicant__c", [{"Name": "Ivy", "Stage__c": "Hired"}])[0].id
    clock.advance(hours=4)
    unwired = replace(auto, hooks=None, settings=replace(auto.settings, dispatcher_poll_ms=50))
    running = start_dispatcher(unwired)
    try:
        _wait(lambda: _flag(auto, rid) == "welcomed", "the dispatcher did not fire the scheduled path")
    finally:
        running.close()
    assert dispatcher_errors.messages == []
