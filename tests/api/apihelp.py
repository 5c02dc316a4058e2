"""Shared helpers for the API tests (importable by test modules, unlike conftest)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import httpx
import requests

from keel.context import Context
from keel.security import sessions
from keel.storage import ids

PG_URL = os.environ.get("KEEL_TEST_PG")
PACKAGE = Path(__file__).parent / "package"
ADMIN, ADMIN_PW = "admin@api.test", "an admin passphrase for the api"
USER, USER_PW = "user@api.test", "a standard user passphrase"
NOAPI, NOAPI_PW = "noapi@api.test", "a user who cannot use the api"
V = "59.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    """A running server and what tests need to talk to it."""

    ctx: Context
    http: str  # http://127.0.0.1:PORT
    https: str  # https://127.0.0.1:PORT
    cert: Path
    client_id: str
    client_secret: str
    backend: str

    def login(self, username: str = ADMIN, password: str = ADMIN_PW) -> str:
        r = httpx.post(f"{self.http}/services/oauth2/token", data={
            "grant_type": "password", "client_id": self.client_id, "client_secret": self.client_secret,
            "username": username, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def session(self) -> requests.Session:
        s = requests.Session()
        s.verify = str(self.cert)
        s.trust_env = False
        return s


def user_id(live: Live, username: str) -> str:
    with live.ctx.db.read() as conn:
        found = sessions._find_user(conn, live.ctx, username)
    assert found is not None
    return ids.encode("005", found[0])
