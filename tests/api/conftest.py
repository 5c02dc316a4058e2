"""A live Keel server (HTTP and HTTPS in one uvicorn process, on free ports, in a thread) per backend.

The organisation gets the test package (``Widget__c``), a connected app, an administrator, a standard user with
API access through a permission set, and a standard user without it. PostgreSQL runs when ``KEEL_TEST_PG`` is set,
in a fresh schema dropped at the end; if the server is unreachable those tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from apihelp import ADMIN, ADMIN_PW, NOAPI, NOAPI_PW, PACKAGE, PG_URL, USER, USER_PW, Live, V, free_port

from keel.api.app import create_app
from keel.api.tls import certificate_paths
from keel.context import Context
from keel.security import sessions
from keel.security.package import PermissionSetSpec
from keel.services.metadata import apply_package
from keel.services.org import init_org, open_context
from keel.services.security import assign_permission_set, deploy_permission_set, system_context
from keel.services.users import create_user
from keel.settings import Settings

API_BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _setup_org(url: str, data_dir: Path) -> tuple[Context, str, str]:
    settings = Settings(database_url=url, data_dir=str(data_dir), api_requests_per_minute=100_000)
    ctx = open_context(url, settings=settings)
    init_org(ctx, admin_username=ADMIN, admin_password=ADMIN_PW)
    apply_package(ctx, PACKAGE)
    sysctx = system_context(ctx, "api test setup")
    with ctx.db.transaction() as conn:
        deploy_permission_set(sysctx, conn, PermissionSetSpec(
            "API_Widgets", "API Widgets", False, ("ApiEnabled",),
            {"Widget__c": ("read", "create", "edit", "delete"), "Account": ("read", "create", "edit", "delete")},
            {f"Widget__c.{f}": (True, True) for f in ("Ext_Id__c", "Code__c", "Account__c", "Amount__c",
                                                      "Count__c", "Active__c", "When__c", "Day__c", "Color__c",
                                                      "Email__c")}))
    user_id = create_user(sysctx, username=USER, password=USER_PW, last_name="User", email=USER,
                          profile="Standard User")
    create_user(sysctx, username=NOAPI, password=NOAPI_PW, last_name="NoApi", email=NOAPI, profile="Standard User")
    with ctx.db.transaction() as conn:
        assign_permission_set(sysctx, conn, user_id, "API_Widgets")
    with ctx.db.transaction() as conn:
        admin = sessions._find_user(conn, ctx, ADMIN)
        assert admin is not None
        client_id, secret = sessions.create_connected_app(sysctx, conn, "tests", run_as_user_id=admin[0])
    return ctx, client_id, secret


def _start(ctx: Context) -> tuple[list[uvicorn.Server], threading.Thread, int, int, Path]:
    app = create_app(ctx)
    http_port, https_port = free_port(), free_port()
    cert, key = certificate_paths(ctx.settings)
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning", lifespan="off")),
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=https_port, log_level="warning", lifespan="off",
                                      ssl_certfile=str(cert), ssl_keyfile=str(key))),
    ]

    def run() -> None:
        async def main() -> None:
            await asyncio.gather(*(s.serve() for s in servers))

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not all(s.started for s in servers):
        assert time.time() < deadline, "the test server did not start"
        assert thread.is_alive(), "the test server thread died"
        time.sleep(0.02)
    return servers, thread, http_port, https_port, cert


@pytest.fixture(scope="module", params=API_BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"api-{backend}")
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'keel.db'}"
    else:
        assert PG_URL, "KEEL_TEST_PG is not set"
        schema = f"keel_a_{uuid.uuid4().hex[:12]}"
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    ctx, client_id, secret = _setup_org(url, tmp / ".keel")
    servers, thread, http_port, https_port, cert = _start(ctx)
    try:
        yield Live(ctx, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}", cert, client_id, secret,
                   backend)
    finally:
        for s in servers:
            s.should_exit = True
        thread.join(10)
        ctx.db.dispose()
        if schema is not None:
            engine = sa.create_engine(str(PG_URL).replace("postgresql://", "postgresql+psycopg://", 1))
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            engine.dispose()


@pytest.fixture(scope="module")
def admin_token(live: Live) -> str:
    return live.login()


@pytest.fixture(scope="module")
def api(live: Live, admin_token: str) -> Iterator[httpx.Client]:
    """An httpx client on plain HTTP as the administrator, with the base path ``/services/data/v59.0``."""
    with httpx.Client(base_url=f"{live.http}/services/data/v{V}",
                      headers={"Authorization": f"Bearer {admin_token}"}, timeout=60) as c:
        yield c
