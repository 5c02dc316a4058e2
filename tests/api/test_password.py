"""POST /sobjects/User/{id}/password sets a password as Salesforce does; others need Manage Users."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from keel.api.app import create_app
from keel.context import Context
from keel.security.sessions import LoginError, authenticate
from keel.services.users import create_user


def test_set_password_through_the_api(org: Context) -> None:
    app = create_app(org)
    ctx = app.state.ctx
    ann = create_user(ctx, username="ann@agency.gov", password="ann's first passphrase", last_name="Ann",
                      email="ann@agency.gov", profile="Standard User")
    bob = create_user(ctx, username="bob@agency.gov", password="bob's first passphrase", last_name="Bob",
                      email="bob@agency.gov", profile="Standard User")
    admin = authenticate(ctx, "admin@example.com", "a long admin passphrase", ip="127.0.0.1")
    with TestClient(app) as client:
        h = {"Authorization": f"Bearer {admin.token}"}
        url = f"/services/data/v59.0/sobjects/User/{ann}/password"
        r = client.post(url, json={"NewPassword": "ann's brand new passphrase"}, headers=h)
        assert r.status_code == 204, r.text
        assert client.get(url, headers=h).json() == {"isExpired": False}
        bad = client.post(url, json={"NewPassword": "short"}, headers=h)
        assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_NEW_PASSWORD"
    authenticate(ctx, "ann@agency.gov", "ann's brand new passphrase", ip="127.0.0.1")
    with pytest.raises(LoginError):
        authenticate(ctx, "ann@agency.gov", "ann's first passphrase", ip="127.0.0.1")
    assert bob
