"""A live server with the real apps installed, persona users who can log in, and a headless Chromium, for the
per-app browser walkthroughs (tests/web/test_walkthrough_*.py).

The web suite's own ``live_server`` fixture serves a small test package; the walkthroughs need each app exactly
as ``keel app install`` deploys it (objects, flows, approvals, permission sets, layouts), so a day-one user's path
is what they exercise. Argon2 makes each password a noticeable cost, so each walkthrough creates only the
personas it logs in as.
"""

from __future__ import annotations

import os
import re
import struct
import time
import zlib
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
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "apps" / "img"  # the user guides' pictures
DOC_SIZE = {"width": 1280, "height": 800}
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
    """The whole page under tests/artifacts/ (gitignored); with ``KEEL_DOC_SCREENSHOTS=1`` also the user guide's
    picture of this step, docs/apps/img/<name>.png: the 1280x800 viewport, recompressed."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"walkthrough-{name}.png"), full_page=True)
    if os.environ.get("KEEL_DOC_SCREENSHOTS") == "1":
        doc_shot(page, name)


def doc_shot(page: Any, name: str) -> Path:
    size = page.viewport_size
    page.set_viewport_size(DOC_SIZE)
    try:
        png = page.screenshot(full_page=False)
    finally:
        page.set_viewport_size(size)
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    out = DOC_IMAGES / f"{name}.png"
    out.write_bytes(recompress_png(png))
    assert png_size(out.read_bytes()) == (DOC_SIZE["width"], DOC_SIZE["height"]), out
    return out


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def recompress_png(png: bytes) -> bytes:
    """The same image with its pixel data deflated at level 9 in one IDAT chunk, and nothing but the chunks a
    viewer needs (Chromium writes fast, large PNGs; there is no image library to lean on)."""
    pos, chunks, data = 8, [], b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IDAT":
            data += body
        elif kind in (b"IHDR", b"PLTE", b"IEND"):
            chunks.append((kind, body))
    packed = zlib.compress(zlib.decompress(data), 9)
    out = png[:8]
    for kind, body in chunks:
        if kind == b"IEND":
            out += _chunk(b"IDAT", packed)
        out += _chunk(kind, body)
    return out


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def record_id(page: Any) -> str:
    """The id of the record page the browser is on."""
    page.wait_for_url(re.compile(r"/r/[A-Za-z0-9]{18}$"))
    return str(page.url.rsplit("/", 1)[1])


def pick(page: Any, label: str, text: str) -> None:
    """Choose a record in a lookup field's search picker."""
    page.get_by_label(f"Search {label}").fill(text)
    page.get_by_role("option", name=re.compile(re.escape(text))).first.click()
