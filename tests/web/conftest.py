"""Fixtures for the web app: an organisation with the recruiting test package, an administrator and a recruiter
who cannot read three sensitive fields; HTTP clients through Starlette's TestClient on every backend, and a live
uvicorn server (SQLite) for the browser tests.

PostgreSQL runs when ``KEEL_TEST_PG`` is set, in a fresh schema dropped at the end; if the server is unreachable
these tests fail, they never skip.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from keel.cli.asgi import build_app
from keel.context import Context
from keel.records import save_many
from keel.security.package import PermissionSetSpec
from keel.services.metadata import apply_package
from keel.services.org import init_org, open_context
from keel.services.security import assign_permission_set, deploy_permission_set, system_context
from keel.services.users import create_user
from keel.settings import Settings
from tests.livehttp import serving

PACKAGE = Path(__file__).parent / "fixtures" / "recruiting"
PG_URL = os.environ.get("KEEL_TEST_PG")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ADMIN, ADMIN_PW = "admin@web.test", "a long admin passphrase"
RECRUITER, RECRUITER_PW = "recruiter@web.test", "a long recruiter passphrase"
HIDDEN = {"Position__c": "Secret_Notes__c", "Candidate__c": "SSN__c", "Job_Application__c": "Medical_Result__c"}
SECRET = "TOPSECRET7731"
WEB_BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@dataclass
class Org:
    ctx: Context
    backend: str
    positions: list[str]
    candidates: list[str]
    applications: list[str]


def _fields(obj: str, names: list[str]) -> dict[str, tuple[bool, bool]]:
    return {f"{obj}.{n}": (True, True) for n in names}


def setup_org(url: str, data_dir: Path, backend: str) -> Org:
    ctx = open_context(url, settings=Settings(database_url=url, data_dir=str(data_dir)))
    init_org(ctx, admin_username=ADMIN, admin_password=ADMIN_PW)
    apply_package(ctx, PACKAGE)
    sysctx = system_context(ctx, "web test setup")
    objs = ("read", "create", "edit", "delete")
    with ctx.db.transaction() as conn:
        deploy_permission_set(sysctx, conn, PermissionSetSpec(
            "Recruiting_Limited", "Recruiting (limited)", False, (),
            {"Position__c": objs, "Candidate__c": objs, "Job_Application__c": objs},
            {**_fields("Position__c", ["Department__c", "Status__c", "Max_Pay__c", "Headcount__c", "Open_Date__c"]),
             **_fields("Candidate__c", ["Email__c", "Phone__c", "Source__c"]),
             **_fields("Job_Application__c", ["Position__c", "Candidate__c", "Stage__c", "Offer_Amount__c",
                                              "Score__c"])}))
    uid = create_user(sysctx, username=RECRUITER, password=RECRUITER_PW, last_name="Recruiter", email=RECRUITER,
                      profile="Standard User")
    with ctx.db.transaction() as conn:
        assign_permission_set(sysctx, conn, uid, "Recruiting_Limited")
    pos = save_many(sysctx, "Position__c", [
        {"Name": f"Position {i:03d}", "Department__c": ("Patrol", "Investigations", "Dispatch")[i % 3],
         "Status__c": "Open" if i % 2 else "Draft", "Headcount__c": i % 7 + 1,
         "Secret_Notes__c": f"{SECRET} note {i}"} for i in range(120)])
    cand = save_many(sysctx, "Candidate__c", [
        {"Name": f"Candidate {i:02d}", "Email__c": f"c{i}@example.com", "SSN__c": f"{SECRET}-{i}",
         "Source__c": "Web"} for i in range(6)])
    apps = save_many(sysctx, "Job_Application__c", [
        {"Name": f"Application {i:02d}", "Position__c": pos[i % 3].id, "Candidate__c": cand[i].id,
         "Stage__c": "Applied", "Score__c": 50 + i, "Medical_Result__c": f"{SECRET} medical"} for i in range(6)])
    # one change so there is history on a hidden field and a visible one
    save_many(sysctx, "Position__c", [{"Id": pos[0].id, "Secret_Notes__c": f"{SECRET} changed",
                                       "Max_Pay__c": 90000}])
    return Org(ctx, backend, [str(r.id) for r in pos], [str(r.id) for r in cand], [str(r.id) for r in apps])


def _pg_url() -> tuple[str, str]:
    assert PG_URL, "KEEL_TEST_PG is not set"
    schema = f"keel_w_{uuid.uuid4().hex[:12]}"
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}", schema


def _drop(schema: str) -> None:
    engine = sa.create_engine(str(PG_URL).replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(scope="module", params=WEB_BACKENDS)
def web_org(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """One organisation per module and backend (argon2 hashing makes set-up cost seconds); tests that change
    data touch their own records and compute expectations from the database."""
    backend = str(request.param)
    tmp_path = tmp_path_factory.mktemp(f"web-{backend}")
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'keel.db'}"
    else:
        url, schema = _pg_url()
    org = setup_org(url, tmp_path / ".keel", backend)
    try:
        yield org
    finally:
        org.ctx.db.dispose()
        if schema is not None:
            _drop(schema)


def login(client: TestClient, username: str, password: str) -> TestClient:
    client.get("/login")
    token = client.cookies.get("keel_lcsrf")
    r = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def digest_of(html: str) -> str:
    """The digest of the metadata plan a setup page shows, which its Apply button carries."""
    m = re.search(r'name="plan_digest" value="([0-9a-f]+)"', html)
    assert m, "no plan on the page"
    return m.group(1)


def plan_and_apply(client: TestClient, url: str, data: dict[str, Any], key: str = "step") -> Any:
    """Show a setup editor's plan, then apply exactly that plan, as the administrator's two clicks do."""
    planned = client.post(url, data={**data, key: "plan"})
    assert planned.status_code == 200, planned.text
    return client.post(url, data={**data, key: "apply", "plan_digest": digest_of(planned.text)},
                       follow_redirects=False)


@pytest.fixture(scope="module")
def admin(web_org: Org) -> Iterator[TestClient]:
    with TestClient(build_app(web_org.ctx)) as c:
        yield login(c, ADMIN, ADMIN_PW)


@pytest.fixture(scope="module")
def recruiter(web_org: Org) -> Iterator[TestClient]:
    with TestClient(build_app(web_org.ctx)) as c:
        yield login(c, RECRUITER, RECRUITER_PW)


@dataclass
class LiveServer:
    url: str
    org: Org


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("web-live")
    org = setup_org(f"sqlite:///{tmp / 'keel.db'}", tmp / ".keel", "sqlite")
    app = build_app(org.ctx)
    app.start_background()  # the bulk worker runs import-wizard jobs, as under keel up
    try:
        with serving(app) as url:
            yield LiveServer(url, org)
    finally:
        app.stop_background()
        org.ctx.db.dispose()
