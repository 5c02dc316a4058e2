"""A live Keel server with the bulk worker (HTTP + HTTPS, in a thread) per backend, and simple-salesforce sessions.

The organisation gets ``Vendor__c`` (external id ``Vendor_Code__c``) and ``Item__c`` (12 fields, a required field,
a unique external id, a restricted picklist and 2 validation rules). PostgreSQL runs when ``KEEL_TEST_PG`` is set,
in a fresh schema dropped at the end; if the server is unreachable those tests fail, they never skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from simple_salesforce import Salesforce, SalesforceLogin
from tests.conftest import drop_pg_schema, pg_schema_url

from keel.api.app import create_app
from keel.api.tls import certificate_paths
from keel.context import Context
from keel.services.bulk_worker import BulkWorker
from keel.services.metadata import apply_package
from keel.services.org import init_org, open_context
from keel.settings import Settings

PG_URL = os.environ.get("KEEL_TEST_PG")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
PACKAGE = Path(__file__).parent / "package"
ADMIN, ADMIN_PW = "admin@bulk.test", "an admin passphrase for bulk"
V = "59.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    ctx: Context
    http: str
    https: str
    cert: Path
    backend: str
    worker: BulkWorker

    def session(self) -> requests.Session:
        s = requests.Session()
        s.verify = str(self.cert)
        s.trust_env = False
        return s

    def sf(self) -> Salesforce:
        s = self.session()
        sid, inst = SalesforceLogin(username=ADMIN, password=ADMIN_PW, security_token="", scratch_url=self.https,
                                    session=s, sf_version=V)
        return Salesforce(session_id=sid, instance=inst, session=s, version=V)

    def token(self) -> str:
        sid, _ = SalesforceLogin(username=ADMIN, password=ADMIN_PW, security_token="", scratch_url=self.https,
                                 session=self.session(), sf_version=V)
        return str(sid)

    def count(self, soql_table: str, where: str = "") -> int:
        from keel.services.query import query

        return int(query(self.ctx, f"SELECT COUNT() FROM {soql_table} {where}")["totalSize"])


def start_server(ctx: Context) -> tuple[list[uvicorn.Server], threading.Thread, int, int, Path, BulkWorker]:
    app = create_app(ctx)
    worker = BulkWorker(ctx).start()
    app.state.bulk_worker = worker
    http_port, https_port = free_port(), free_port()
    cert, key = certificate_paths(ctx.settings)
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning", lifespan="off",
                                      timeout_keep_alive=75)),
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=https_port, log_level="warning", lifespan="off",
                                      ssl_certfile=str(cert), ssl_keyfile=str(key), timeout_keep_alive=75)),
    ]

    def run() -> None:
        async def main() -> None:
            await asyncio.gather(*(s.serve() for s in servers))

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not all(s.started for s in servers):
        assert time.time() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    return servers, thread, http_port, https_port, cert, worker


def setup_org(url: str, data_dir: Path) -> Context:
    settings = Settings(database_url=url, data_dir=str(data_dir), api_requests_per_minute=100_000)
    ctx = open_context(url, settings=settings)
    init_org(ctx, admin_username=ADMIN, admin_password=ADMIN_PW)
    apply_package(ctx, PACKAGE)
    return ctx


drop_schema = drop_pg_schema


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"bulk-{backend}")
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'keel.db'}"
    else:
        url, schema = pg_schema_url("keel_b")
    ctx = setup_org(url, tmp / ".keel")
    servers, thread, http_port, https_port, cert, worker = start_server(ctx)
    try:
        yield Live(ctx, f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}", cert, backend, worker)
    finally:
        worker.stop()
        for s in servers:
            s.should_exit = True
            s.force_exit = True  # do not wait for simple-salesforce's idle keep-alive connections
        thread.join(10)
        ctx.db.dispose()
        if schema is not None:
            drop_schema(schema)


@pytest.fixture(scope="module")
def sf(live: Live) -> Salesforce:
    return live.sf()


@pytest.fixture(scope="module")
def http(live: Live) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=f"{live.http}/services/data/v{V}", timeout=120,
                      headers={"Authorization": f"Bearer {live.token()}"}) as c:
        yield c


