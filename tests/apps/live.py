"""A live server with the real apps installed, persona users who can log in, and a headless Chromium, for the
per-app browser walkthroughs (tests/web/test_walkthrough_*.py).

The web suite's own ``live_server`` fixture serves a small test package; the walkthroughs need each app exactly
as ``keel app install`` deploys it (objects, flows, approvals, permission sets, layouts), so a day-one user's path
is what they exercise. Argon2 makes each password a noticeable cost, so each walkthrough creates only the
personas it logs in as.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.cli.asgi import build_app
from keel.context import Context
from keel.services.apps import install_app
from keel.services.automation import wire_automation
from keel.services.org import init_org, open_context
from keel.services.query import query
from keel.services.security import assign_permission_set, system_context
from keel.services.users import create_user
from keel.settings import Settings
from tests.livehttp import serving

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "a long walkthrough passphrase"
ADMIN = "admin@walkthrough.test"


@dataclass(frozen=True)
class Persona:
    username: str
    last_name: str
    permission_sets: tuple[str, ...]
    role: str | None = None


@dataclass
class Live:
    url: str
    ctx: Context  # wired with automation, acting as the system: for set-up and for reading back what was stored
    users: dict[str, str] = field(default_factory=dict)  # username -> user id

    def rows(self, soql: str) -> list[dict[str, Any]]:
        return [dict(r) for r in query(self.ctx, soql)["records"]]

    def wait_for(self, soql: str, ok: Callable[[list[dict[str, Any]]], bool], timeout: float = 10) -> list[
            dict[str, Any]]:
        """Poll until the stored rows satisfy ``ok``: a browser action returns before its request may have
        committed (htmx, drag and drop)."""
        deadline = time.time() + timeout
        while True:
            got = self.rows(soql)
            if ok(got):
                return got
            assert time.time() < deadline, f"stored rows never satisfied the check: {got}"
            time.sleep(0.1)


@contextmanager
def live_apps(tmp: Path, apps: Sequence[str], people: Sequence[Persona]) -> Iterator[Live]:
    """An organisation (SQLite) with ``apps`` installed and ``people`` able to log in, served by uvicorn."""
    url = f"sqlite:///{tmp / 'keel.db'}"
    base = open_context(url, settings=Settings(database_url=url, data_dir=str(tmp / ".keel")))
    init_org(base, admin_username=ADMIN, admin_password=PASSWORD)
    for name in apps:
        install_app(base, name)
    sysctx = system_context(wire_automation(base), "walkthrough set-up")
    users = {}
    for p in people:
        uid = create_user(sysctx, username=p.username, password=PASSWORD, last_name=p.last_name, email=p.username,
                          profile="Standard User", role=p.role)
        with base.db.transaction() as conn:
            for s in p.permission_sets:
                assign_permission_set(sysctx, conn, uid, s)
        users[p.username] = uid
    app = build_app(base)
    app.start_background()
    try:
        with serving(app) as url:
            yield Live(url, sysctx, users)
    finally:
        app.stop_background()
        base.db.dispose()


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright (never ``playwright install``)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def logged_in(browser: Any, base_url: str, username: str, password: str = PASSWORD) -> Iterator[Any]:
    """A page signed in as ``username`` in its own browser context (its own cookies); fails on CSP errors."""
    bctx = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=base_url)
    page = bctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))
    try:
        yield page
    finally:
        bctx.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"walkthrough-{name}.png"), full_page=True)


def record_id(page: Any) -> str:
    """The id of the record page the browser is on."""
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9]{18}$"))
    return str(page.url.rsplit("/", 1)[1])


def pick(page: Any, label: str, text: str) -> None:
    """Choose a record in a lookup field's search picker."""
    page.get_by_label(f"Search {label}").fill(text)
    page.get_by_role("option", name=re.compile(re.escape(text))).first.click()
