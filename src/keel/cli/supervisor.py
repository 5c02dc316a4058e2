"""``keel serve --workers N``: one supervisor process and N server processes on one port.

Why processes: one Python process is bound by the GIL (about 500 single-record creates a second on one core), so
using more cores takes more processes.

- **Listening.** Every worker binds its own listening socket to the same port with ``SO_REUSEPORT`` and the kernel
  spreads new connections evenly across them. With one shared listening socket, the event loop that woke first
  accepted a whole burst of connections (asyncio accepts up to the backlog per wake-up), so a client's keep-alive
  pool could land on one process. The supervisor checks the port is free and keeps it reserved (bound, never
  listening, so it receives no connections) while the workers come and go.
- **One process does the background work.** Worker 0 runs the bulk worker and the outbox dispatcher; the others
  serve requests only. A worker that dies is started again in its slot, so the background work is restarted too.
- **Start-up.** The supervisor builds the app once before starting workers, so the idempotent start-up DDL (system
  tables created if missing) never runs concurrently: concurrent ``CREATE TABLE IF NOT EXISTS`` races on
  PostgreSQL's catalog.
- **Metrics.** Workers count requests in prometheus_client's multiprocess mode, in a per-run directory the
  supervisor creates (``PROMETHEUS_MULTIPROC_DIR``) and removes; ``/metrics`` on any worker reports the sum.
- **Stopping.** SIGTERM or SIGINT stops every worker gracefully (requests in flight finish; SIGKILL after
  ``STOP_SECONDS``). A worker whose supervisor disappears stops by itself.

Workers are fresh interpreters (``python -m keel.cli.supervisor``), not forks: a fork would inherit the
supervisor's database connections and prometheus_client's single-process state.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keel.context import Context
from keel.errors import KeelError

log = logging.getLogger("keel.supervisor")
STOP_SECONDS = 30  # uvicorn's own graceful timeout (asgi.GRACEFUL_SECONDS) plus the background workers' stop
POLL_SECONDS = 0.1
STABLE_SECONDS = 10  # a worker that lived this long is restarted at once; quicker deaths back off
MAX_BACKOFF_SECONDS = 30.0


def resolve_workers(requested: int) -> int:
    """``0`` means one worker per CPU."""
    return requested if requested > 0 else max(1, os.cpu_count() or 1)


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    family, _type, _proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, addr


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, addr = _address(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """Check that nothing listens on the port, then hold it for the workers. The first bind is without
    ``SO_REUSEPORT``: with it, a second ``keel serve`` on the same port would silently join this one's group."""
    try:
        probe = bind(host, port, reuse_port=False)
    except OSError as e:
        raise KeelError(f"Cannot listen on {host}:{port}: {e.strerror}.", code="PORT_IN_USE") from None
    port = int(probe.getsockname()[1])
    probe.close()
    return bind(host, port, reuse_port=True)


@dataclass
class Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    quick_deaths: int = 0


class Supervisor:
    """Starts the workers, restarts any that exits, and stops them all on SIGTERM/SIGINT."""

    def __init__(self, command: Callable[[int], list[str]], workers: int, env: dict[str, str],
                 metrics_dir: str) -> None:
        self.command = command
        self.env = env
        self.metrics_dir = metrics_dir
        self.slots = [Slot(i) for i in range(workers)]
        self.stopping = threading.Event()
        self.signals = 0

    def _signal(self, *_: Any) -> None:
        self.signals += 1
        self.stopping.set()

    def start(self, slot: Slot) -> None:
        slot.proc = subprocess.Popen(self.command(slot.index), env=self.env)
        slot.started = time.monotonic()
        log.info("worker started", extra={"fields": {"worker": slot.index, "worker_pid": slot.proc.pid,
                                                     "background": slot.index == 0}})

    def reap(self) -> None:
        from prometheus_client import multiprocess

        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is not None and (code := slot.proc.poll()) is not None:
                multiprocess.mark_process_dead(slot.proc.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
                slot.quick_deaths = slot.quick_deaths + 1 if now - slot.started < STABLE_SECONDS else 0
                delay = min(MAX_BACKOFF_SECONDS, 0.25 * 2 ** slot.quick_deaths) if slot.quick_deaths else 0.0
                log.error("worker exited; restarting", extra={"fields": {
                    "worker": slot.index, "worker_pid": slot.proc.pid, "returncode": code,
                    "restart_in_seconds": delay}})
                slot.proc, slot.restart_at = None, now + delay
            if slot.proc is None and now >= slot.restart_at and not self.stopping.is_set():
                self.start(slot)

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self.slots:
                self.start(slot)
            while not self.stopping.wait(POLL_SECONDS):
                self.reap()
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        log.info("stopping workers", extra={"fields": {"worker_pids": [s.proc.pid for s in self.slots if s.proc]}})
        running = [s.proc for s in self.slots if s.proc is not None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        seen = self.signals
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            if self.signals > seen:  # a second Ctrl-C: workers stop waiting for requests in flight
                seen = self.signals
                for p in running:
                    if p.poll() is None:
                        p.send_signal(signal.SIGINT)
            time.sleep(POLL_SECONDS)
        for p in running:
            if p.poll() is None:
                log.error("worker did not stop in time; killing it", extra={"fields": {"worker_pid": p.pid}})
                p.kill()
            p.wait()
        log.info("stopped", extra={"fields": {"returncodes": [p.returncode for p in running]}})


def serve_workers(ctx: Context, *, host: str, port: int, https_port: int, workers: int,
                  announce: Callable[[str], None] = print) -> None:
    """Serve with ``workers`` processes (see the module docstring); returns when they have all stopped."""
    from keel.api.tls import certificate_paths
    from keel.cli.asgi import build_app
    from keel.services.bulk import ensure_tables

    if ctx.db.dialect == "sqlite" and (":memory:" in ctx.db.url or ctx.db.url.rstrip("/").endswith("sqlite:")):
        raise KeelError("Several workers need a database file or server; an in-memory database lives in one "
                        "process.", code="WORKERS_NEED_SHARED_DATABASE")
    build_app(ctx, background=False)  # start-up DDL, once
    ensure_tables(ctx)
    if https_port:
        certificate_paths(ctx.settings)  # created once here, not raced by the workers
    ctx.db.dispose()
    held = [reserve(host, p) for p in (port, https_port) if p]
    ports = [int(s.getsockname()[1]) for s in held]
    http_port = ports.pop(0) if port else 0
    tls_port = ports.pop(0) if https_port else 0
    metrics_dir = tempfile.mkdtemp(prefix="keel-metrics-")
    # the URL goes by environment, not argv, where ``ps`` would show its password
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "KEEL_DATABASE_URL": ctx.db.url}
    parent = str(os.getpid())

    def command(index: int) -> list[str]:
        return [sys.executable, "-m", "keel.cli.supervisor", "--host", host,
                "--port", str(http_port), "--https-port", str(tls_port), "--worker", str(index),
                "--supervisor", parent]

    if http_port:
        announce(f"HTTP  http://{host}:{http_port}  (web app at /, API under /services; {workers} workers)")
    if tls_port:
        cert, _key = certificate_paths(ctx.settings)
        announce(f"HTTPS https://{host}:{tls_port}  (certificate: {cert.resolve()})")
    log.info("supervisor started", extra={"fields": {"workers": workers, "metrics_dir": metrics_dir}})
    try:
        Supervisor(command, workers, env, metrics_dir).run()
    finally:
        for s in held:
            s.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _watch_parent(parent: int) -> None:
    """Stop this worker (gracefully, through its own SIGTERM handler) when the supervisor is gone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main(argv: Sequence[str] | None = None) -> None:
    """One worker process: listen on the supervisor's ports and serve until SIGTERM."""
    from keel.api.observability import configure_json_logging
    from keel.cli.asgi import build_servers, run_servers
    from keel.cli.common import context

    ap = argparse.ArgumentParser(prog="keel-worker")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--https-port", type=int, required=True)
    ap.add_argument("--worker", type=int, required=True)
    ap.add_argument("--supervisor", type=int, required=True)
    args = ap.parse_args(argv)
    configure_json_logging()
    ctx = context(None)
    servers, app = build_servers(ctx, host=args.host, port=args.port, https_port=args.https_port,
                                 background=args.worker == 0, log_level="warning")
    sockets: list[list[socket.socket] | None] = []
    for p in (args.port, args.https_port):
        if p:
            sock = bind(args.host, p, reuse_port=True)
            sock.listen(2048)
            sockets.append([sock])
    threading.Thread(target=_watch_parent, args=(args.supervisor,), name="keel-parent-watch", daemon=True).start()
    run_servers(servers, app, sockets)


if __name__ == "__main__":  # pragma: no cover - started by the supervisor
    worker_main()
