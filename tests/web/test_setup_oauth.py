"""Setup > Connected apps, the JWT bearer and web-server flow settings through HTTP: a certificate (pasted or as a
file), callback URLs and pre-authorized users; bad input is refused with a message, non-administrators are refused."""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from keel.security import oauth_flows, sessions
from keel.services.security import system_context

from .conftest import ADMIN, Org, csrf_of


def _pem(cn: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=9))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_certificate_callbacks_and_preauthorized_users(admin: TestClient, recruiter: TestClient,
                                                       web_org: Org) -> None:
    sysctx = system_context(web_org.ctx, "setup oauth test")
    with web_org.ctx.db.transaction() as conn:
        client_id, _secret = sessions.create_connected_app(sysctx, conn, "Integration")
    page = admin.get("/setup/connected-apps").text
    assert "No certificate: the app cannot use the JWT bearer grant." in page
    csrf = csrf_of(page)
    base = {"csrf_token": csrf, "client_id": client_id}

    bad = admin.post("/setup/connected-apps", data={**base, "action": "certificate", "certificate": "hello"})
    assert bad.status_code == 400 and "not a PEM X.509 certificate" in bad.text
    ok = admin.post("/setup/connected-apps", data={**base, "action": "certificate"},
                    files={"certificate_file": ("server.crt", _pem("uploaded.example").encode())})
    assert ok.status_code == 200 and "Connected app: certificate saved." in ok.text
    assert "CN=uploaded.example" in ok.text
    app = oauth_flows.find_app(web_org.ctx, client_id)
    assert app is not None and app.certificate is not None
    pasted = admin.post("/setup/connected-apps", data={**base, "action": "certificate",
                                                       "certificate": _pem("pasted.example")})
    assert "CN=pasted.example" in pasted.text

    for url in ("javascript:alert(1)", "http://remote.example/cb", "https://x.example/cb#frag", "/relative"):
        r = admin.post("/setup/connected-apps", data={**base, "action": "callbacks", "callback_urls": url})
        assert r.status_code == 400, url
    r = admin.post("/setup/connected-apps", data={**base, "action": "callbacks",
                                                  "callback_urls": "https://app.example/cb\nhttp://localhost:9/cb\n"})
    assert r.status_code == 200 and "https://app.example/cb\nhttp://localhost:9/cb</textarea>" in r.text
    app = oauth_flows.find_app(web_org.ctx, client_id)
    assert app is not None and app.callback_urls == ("https://app.example/cb", "http://localhost:9/cb")

    admin_id = re.search(rf'<option value="(005[A-Za-z0-9]+)">{re.escape(ADMIN)}</option>', r.text)
    assert admin_id
    r = admin.post("/setup/connected-apps", data={**base, "action": "preauthorize", "user_id": admin_id.group(1)})
    assert f"<li>{ADMIN}</li>" in r.text
    r = admin.post("/setup/connected-apps", data={**base, "action": "unauthorize", "user_id": admin_id.group(1)})
    assert f"<li>{ADMIN}</li>" not in r.text

    sneaky = recruiter.post("/setup/connected-apps", data={
        "csrf_token": csrf_of(recruiter.get("/").text), "client_id": client_id, "action": "callbacks",
        "callback_urls": "https://evil.example/cb"})
    assert sneaky.status_code == 403
    app = oauth_flows.find_app(web_org.ctx, client_id)
    assert app is not None and "https://evil.example/cb" not in app.callback_urls
