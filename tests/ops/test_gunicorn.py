"""The documented alternative to ``keel serve --workers N``: gunicorn with uvicorn workers on the ASGI factory.

docs/deploy.md gives the exact command line; this runs it (two workers), so the factory, the migrations check, the
JSON logs and a clean SIGTERM stop are exercised the way an operator would use them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from keel.context import Context
from keel.security import sessions
from keel.services.org import open_context
from keel.services.query import query_all_records
from keel.settings import Settings
from tests.conftest import ADMIN, ADMIN_PASSWORD
from tests.livehttp import free_port
from tests.ops.test_workers import alive, wait_for

V = "v59.0"
DEPLOY_MD = Path(__file__).parent.parent.parent / "docs" / "deploy.md"


def documented_command() -> list[str]:
    """The gunicorn command line of docs/deploy.md's ExecStart, so the doc and this test cannot drift apart."""
    text = DEPLOY_MD.read_text()
    found = re.search(r"ExecStart=/opt/keel/bin/gunicorn (.+?)'keel\.cli\.ops:asgi_app\(\)'", text, re.S)
    assert found, "docs/deploy.md no longer documents gunicorn"
    args = found.group(1).replace("\\\n", " ").split()
    return [*args, "keel.cli.ops:asgi_app()"]


def test_gunicorn_with_uvicorn_workers(org: Context, tmp_path: Path) -> None:
    token = sessions.authenticate(org, ADMIN, ADMIN_PASSWORD, ip="127.0.0.1", kind="api").token
    org.db.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = documented_command()
    assert args[:4] == ["-k", "uvicorn_worker.UvicornWorker", "-w", "4"], args
    args[3] = "2"  # two workers are enough to show the shape, and start faster
    args[args.index("-b") + 1] = f"127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "KEEL_DATABASE_URL": org.db.url, "KEEL_DATA_DIR": str(tmp_path / ".keel"),
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([gunicorn, *args], env=env, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=tmp_path)

    def booted() -> list[int]:
        return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]

    try:
        wait_for("two gunicorn workers", lambda: len(booted()) == 2 or proc.poll() is not None)
        assert proc.poll() is None, log.read_text()

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("/readyz", ready)
        checks = httpx.get(f"{base}/readyz").json()["checks"]
        assert checks["database"]["ok"] and checks["migrations"]["ok"], checks
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/services/data/{V}/limits").status_code == 401
        r = httpx.post(f"{base}/services/data/{V}/sobjects/Account", json={"Name": "Via gunicorn"}, headers=auth)
        assert r.status_code == 201, r.text
        q = httpx.get(f"{base}/services/data/{V}/query", params={"q": "SELECT Name FROM Account"}, headers=auth)
        assert q.status_code == 200 and "Via gunicorn" in {x["Name"] for x in q.json()["records"]}
        assert 'route="data_api:sobjects",status="201"' in httpx.get(f"{base}/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(45)
    text = log.read_text()
    assert code == 0, text
    workers = booted()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
    assert "Shutting down: Master" in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(e["logger"] == "keel.access" and e["status"] == 201 for e in lines), "JSON access lines from the workers"
    ctx = open_context(org.db.url, settings=Settings(database_url=org.db.url, data_dir=str(tmp_path / ".keel")))
    try:
        assert [r["Name"] for r in query_all_records(ctx, "SELECT Name FROM Account WHERE Name = 'Via gunicorn'")]
    finally:
        ctx.db.dispose()
