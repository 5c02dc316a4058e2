"""Personas over the REST API, and the business rules of the three apps by ``Object.Rule`` name.

Refusal tests name the rule they expect rather than copying its message, so the assertion is the rule's own
message as the package ships it, and ``all_app_rules`` lets a test check that every rule is named somewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import yaml
from starlette.testclient import TestClient

from keel.context import Context
from keel.security import sessions
from keel.services.apps import app_dir
from keel.services.security import assign_permission_set, user_context
from keel.services.users import create_user
from keel.storage import ids

V = "/services/data/v59.0"
PASSWORD = "a persona passphrase for the api"
APPS = ("recruiting", "vendors", "philanthropy")
VALIDATION = "FIELD_CUSTOM_VALIDATION_EXCEPTION"


@cache
def all_app_rules() -> dict[str, str]:
    """``{"Object.Rule": message}`` for every validation rule the three app packages declare."""
    rules: dict[str, str] = {}
    for app in APPS:
        root = app_dir(app)
        for path in sorted([*root.glob("objects/*.yaml"), *root.glob("extends/*.yaml")]):
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            obj = doc.get("object") or path.stem
            for rule in doc.get("validation_rules") or []:
                rules[f"{obj}.{rule['name']}"] = str(rule["message"])
    return rules


def errors(r: httpx.Response) -> list[tuple[str, str]]:
    body = r.json()
    assert isinstance(body, list), r.text
    return [(e["errorCode"], e["message"]) for e in body]


def assert_rule(r: httpx.Response, rule: str) -> None:
    """The write came back 400 with the rule's FIELD_CUSTOM_VALIDATION_EXCEPTION and its message."""
    assert r.status_code == 400, r.text
    assert (VALIDATION, all_app_rules()[rule]) in errors(r), r.text


def assert_code(r: httpx.Response, status: int, code: str, needle: str = "") -> None:
    """A refusal that is not a validation rule (record locks, field security): its status, code and message."""
    assert r.status_code == status, r.text
    assert any(c == code and needle in m for c, m in errors(r)), r.text


@dataclass
class Persona:
    """One user's bearer token on the shared client, and the same user in process for setting up data."""
    client: TestClient
    token: str
    id: str
    ctx: Context
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def post(self, obj: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(f"{V}/sobjects/{obj}", json=body, headers=self.headers)

    def patch(self, obj: str, rid: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.patch(f"{V}/sobjects/{obj}/{rid}", json=body, headers=self.headers)

    def created(self, obj: str, body: dict[str, Any]) -> str:
        r = self.post(obj, body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def updated(self, obj: str, rid: str, body: dict[str, Any]) -> None:
        r = self.patch(obj, rid, body)
        assert r.status_code == 204, r.text


class Rest:
    """``rest.login("rec", "Recruiting_Recruiter")``: a new user with those permission sets, logged in by the
    OAuth password grant."""

    def __init__(self, apps: Context, client: TestClient, client_id: str, secret: str) -> None:
        self.apps, self.client, self.client_id, self.secret = apps, client, client_id, secret

    def login(self, name: str, *sets: str, role: str | None = None, profile: str | None = None) -> Persona:
        username = f"{name}@rules.local"
        uid = create_user(self.apps, username=username, password=PASSWORD, last_name=name, email=username,
                          role=role, profile=profile)
        with self.apps.db.transaction() as conn:
            for s in sets:
                assign_permission_set(self.apps, conn, uid, s)
        r = self.client.post("/services/oauth2/token", data={
            "grant_type": "password", "client_id": self.client_id, "client_secret": self.secret,
            "username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        ctx = user_context(self.apps, uid)
        return Persona(self.client, str(r.json()["access_token"]), ids.encode("005", ctx.actor.user_id), ctx)


def rest_session(apps: Context) -> Iterator[Rest]:
    from keel.api.app import create_app

    with apps.db.transaction() as conn:
        client_id, secret = sessions.create_connected_app(apps, conn, "app rules")
    with TestClient(create_app(apps), base_url="https://127.0.0.1") as client:
        yield Rest(apps, client, client_id, secret)
