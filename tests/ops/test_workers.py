"""``keel serve --workers 2`` for real: a supervisor and two worker processes on one port, under create load.

One run covers the whole life of the supervisor, because starting worker processes costs seconds: both workers
serve; a SIGKILLed worker comes back with a new pid while the other keeps serving; no acknowledged write is lost and
no request fails with anything but the killed worker's dropped connections; ``/metrics`` from any worker reports the
requests of both; SIGTERM stops every process cleanly and removes the metrics directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from keel.context import Context
from keel.security import sessions
from keel.services.org import open_context
from keel.services.query import query_all_records
from keel.settings import Settings
from tests.conftest import ADMIN, ADMIN_PASSWORD

V = "v59.0"
CREATED = 'keel_http_requests_total{method="POST",route="data_api:sobjects",status="201"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Log:
    """The supervisor's and workers' JSON lines (one shared stderr file), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: list[dict[str, Any]] = []
        self._offset = 0

    def lines(self) -> list[dict[str, Any]]:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            if line.startswith("{"):
                self._seen.append(json.loads(line))
        return self._seen

    def workers(self) -> dict[int, int]:
        """Worker slot -> pid of its latest start."""
        return {d["worker"]: d["worker_pid"] for d in self.lines() if d.get("message") == "worker started"}

    def served_by(self, path_prefix: str) -> set[int]:
        return {d["pid"] for d in self.lines()
                if d.get("logger") == "keel.access" and str(d.get("path", "")).startswith(path_prefix)}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def created_total(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(CREATED))


def test_serve_workers_restart_metrics_and_stop(org: Context, tmp_path: Path) -> None:
    token = sessions.authenticate(org, ADMIN, ADMIN_PASSWORD, ip="127.0.0.1", kind="api").token
    org.db.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    log = Log(tmp_path / "serve.log")
    env = {**os.environ, "KEEL_DATABASE_URL": org.db.url, "KEEL_DATA_DIR": str(tmp_path / ".keel"),
           "KEEL_API_REQUESTS_PER_MINUTE": "100000000"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log.path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "serve", "--workers", "2", "--port",
                                 str(port), "--https-port", "0"], env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for("two workers", lambda: len(log.workers()) == 2)
        first = log.workers()
        metrics_dir = Path(next(d["metrics_dir"] for d in log.lines() if d.get("message") == "supervisor started"))
        assert metrics_dir.is_dir()

        def probe() -> bool:  # each new connection lands on one of the listeners
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base}/healthz", timeout=2)
            return log.served_by("/healthz") >= set(first.values())

        wait_for("both workers serving", probe, timeout=60)

        # creates at concurrency 8 while worker 1 is SIGKILLed and restarted
        acked: list[str] = []
        failures: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()

        def writer(n: int) -> None:
            http = httpx.Client(base_url=base, headers=auth, timeout=30)
            seq = 0
            while not stop.is_set():
                seq += 1
                name = f"w{n}-{seq}"
                try:
                    r = http.post(f"/services/data/{V}/sobjects/Account", json={"Name": name})
                except httpx.TransportError:  # the killed worker's connections; reconnect
                    http.close()
                    http = httpx.Client(base_url=base, headers=auth, timeout=30)
                    continue
                if seq % 20 == 0:  # a fresh connection now and then reaches the restarted worker too
                    http.close()
                    http = httpx.Client(base_url=base, headers=auth, timeout=30)
                with lock:
                    (acked.append(name) if r.status_code == 201 else failures.append(f"{r.status_code} {r.text}"))
            http.close()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        try:
            wait_for("writes on both workers", lambda: log.served_by("/services") >= set(first.values()))
            os.kill(first[1], signal.SIGKILL)
            wait_for("worker 1 restarted", lambda: log.workers()[1] != first[1])
            assert log.workers()[0] == first[0] and alive(first[0]), "the other worker kept running"
            assert not alive(first[1])
            wait_for("the new worker 1 serving writes", lambda: log.workers()[1] in log.served_by("/services"),
                     timeout=60)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert not failures, failures[:5]
        assert len(acked) > 50
        restarted = [d for d in log.lines() if d.get("message") == "worker exited; restarting"]
        assert [(d["worker"], d["worker_pid"], d["returncode"]) for d in restarted] == [(1, first[1], -9)]

        # metrics: creates over fresh connections until both workers have served some, then scrapes until both
        # have answered one: every scrape reports the same total
        def scrape(i: int) -> float:
            r = httpx.get(f"{base}/metrics", headers={"X-Request-Id": f"s-{i}"}, timeout=10)
            return created_total(r.text)

        def served(prefix: str) -> set[int]:
            return {d["pid"] for d in log.lines() if str(d.get("request_id", "")).startswith(prefix)}

        pids = set(log.workers().values())
        before = scrape(0)
        # the killed worker's counts are kept (it may have died between answering and counting, once per writer)
        assert before >= len(acked) - len(threads)
        extra = 0
        while extra < 10 or served("m-") != pids:
            r = httpx.post(f"{base}/services/data/{V}/sobjects/Account", json={"Name": f"m-{extra}"},
                           headers={**auth, "X-Request-Id": f"m-{extra}"})
            assert r.status_code == 201, r.text
            acked.append(f"m-{extra}")
            extra += 1
            assert extra < 200, "new connections never reached both workers"
        totals = []
        while len(totals) < 4 or served("s-") != pids:
            totals.append(scrape(len(totals) + 1))
            assert len(totals) < 100
        assert set(totals) == {before + extra}, (before, extra, totals)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(45)
    pids = log.workers().values()
    assert code == 0
    assert not any(alive(p) for p in pids)
    assert [d["returncodes"] for d in log.lines() if d.get("message") == "stopped"] == [[0, 0]]
    started = [(d["worker"], d["background"]) for d in log.lines() if d.get("message") == "worker started"]
    assert sorted(started) == [(0, True), (1, False), (1, False)], "only worker 0 runs the background work"
    assert not metrics_dir.exists()
    assert not [d for d in log.lines() if d.get("level") == "error" and d.get("logger") != "keel.supervisor"]

    ctx = open_context(org.db.url, settings=Settings(database_url=org.db.url, data_dir=str(tmp_path / ".keel")))
    try:
        names = {r["Name"] for r in query_all_records(ctx, "SELECT Name FROM Account")}
    finally:
        ctx.db.dispose()
    lost = [n for n in acked if n not in names]
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"


def test_port_in_use_is_refused(sqlite_template: Path, tmp_path: Path) -> None:
    """A second server on a busy port fails with a stable code instead of joining the first's SO_REUSEPORT group."""
    shutil.copy(sqlite_template, tmp_path / "keel.db")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "KEEL_DATABASE_URL": f"sqlite:///{tmp_path / 'keel.db'}",
               "KEEL_DATA_DIR": str(tmp_path / ".keel")}
        r = subprocess.run([sys.executable, "-m", "keel.cli.main", "serve", "--workers", "2", "--port",
                            str(port), "--https-port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "PORT_IN_USE" in r.stderr
