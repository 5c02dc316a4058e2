"""Serving: the self-signed certificate, configured certificates, HTTPS next to HTTP, and the 500 catch-all."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path

import httpx
import pytest
from apihelp import Live, V
from cryptography import x509
from starlette.testclient import TestClient

from keel.api import routing
from keel.api.app import create_app
from keel.api.tls import certificate_paths, create_self_signed
from keel.settings import Settings


def test_self_signed_certificate_created_once_with_sans(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    cert, key = certificate_paths(settings)
    assert cert.is_file() and key.is_file()
    assert key.stat().st_mode & 0o077 == 0
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= set(
        san.get_values_for_type(x509.IPAddress))
    before = cert.read_bytes()
    assert certificate_paths(settings)[0].read_bytes() == before  # reused, not regenerated


def test_configured_certificate_is_used(tmp_path: Path) -> None:
    cert, key = tmp_path / "real.pem", tmp_path / "real.key"
    create_self_signed(cert, key)
    settings = Settings(data_dir=str(tmp_path / "data"), tls_cert=str(cert), tls_key=str(key))
    assert certificate_paths(settings) == (cert, key)
    assert not (tmp_path / "data").exists()


def test_https_with_the_generated_certificate(live: Live, admin_token: str) -> None:
    r = httpx.get(f"{live.https}/services/data/v{V}/limits", verify=str(live.cert),
                  headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{live.https}/services/data/", verify=True)  # untrusted without the bundle


def test_unexpected_exceptions_are_logged_500s(live: Live, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    def boom(call: routing.ApiCall) -> routing.Reply:
        raise RuntimeError("a real bug")

    monkeypatch.setattr(routing, "_route", boom)
    ctx = dataclasses.replace(live.ctx)
    with TestClient(create_app(ctx)) as client, caplog.at_level(logging.ERROR, "keel.api"):
        r = client.get(f"/services/data/v{V}/limits", headers={"Authorization": f"Bearer {live.login()}"})
    assert r.status_code == 500 and r.json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    assert "a real bug" not in r.text
    assert any("unhandled error" in rec.message for rec in caplog.records)
