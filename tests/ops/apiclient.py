"""An in-process API client for operations tests: a connected app and an OAuth password-grant token."""

from __future__ import annotations

from starlette.testclient import TestClient

from keel.api.app import create_app
from keel.context import Context
from keel.security import sessions
from keel.services.security import system_context
from tests.conftest import ADMIN, ADMIN_PASSWORD

V = "v59.0"


def client_and_token(org: Context, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> tuple[TestClient, str]:
    sysctx = system_context(org, "ops test setup")
    with org.db.transaction() as conn:
        admin = sessions._find_user(conn, org, ADMIN)
        assert admin is not None
        client_id, secret = sessions.create_connected_app(sysctx, conn, "ops", run_as_user_id=admin[0])
    client = TestClient(create_app(org), base_url="https://testserver")
    r = client.post("/services/oauth2/token", data={"grant_type": "password", "client_id": client_id,
                                                    "client_secret": secret, "username": username,
                                                    "password": password})
    assert r.status_code == 200, r.text
    return client, str(r.json()["access_token"])
