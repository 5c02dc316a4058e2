"""One ASGI app for the whole server: the API's paths go to the API app, everything else to the web app.

``cli`` sits above both ``web`` and ``api`` (which must not import each other), so the dispatcher lives here.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from keel.api.app import create_app
from keel.api.tls import certificate_paths
from keel.context import Context
from keel.services.automation import Running, start_dispatcher, wire_automation
from keel.services.bulk_worker import BulkWorker
from keel.web.app import create_web_app

# simple-salesforce's bulk clients poll every 5 s on one keep-alive connection; uvicorn's default 5 s idle timeout
# races them (the client reuses a socket the server is closing), so keep idle connections longer.
KEEP_ALIVE = 75
API_PREFIXES = ("/services", "/id", "/healthz", "/readyz", "/metrics")
# Under /services but served by the web app: the OAuth2 authorize page needs the web login and session.
WEB_PATHS = ("/services/oauth2/authorize",)


class KeelApp:
    """The ASGI app of one organisation's server, owning its background workers (bulk jobs, the outbox
    dispatcher). They start with the ASGI lifespan, or with ``start_background``, and stop with it, so a test
    client or a stopped server leaves no thread polling a database that is gone."""

    def __init__(self, ctx: Context, *, background: bool = True) -> None:
        self.ctx = wire_automation(ctx)
        self.api = create_app(self.ctx)
        self.web = create_web_app(self.ctx)
        self.background = background
        self._workers: tuple[BulkWorker, Running] | None = None

    def start_background(self) -> None:
        if self.background and self._workers is None:
            bulk = BulkWorker(self.ctx).start()
            self._workers = (bulk, start_dispatcher(self.ctx))
            self.api.state.bulk_worker = bulk

    def stop_background(self) -> None:
        if self._workers is not None:
            bulk, dispatcher = self._workers
            self._workers = None
            dispatcher.close()
            bulk.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = str(scope.get("path", ""))
        api = path not in WEB_PATHS and any(path == p or path.startswith(p + "/") for p in API_PREFIXES)
        target = self.api if api else self.web
        await target(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.stop_background)
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(ctx: Context, *, background: bool = True) -> KeelApp:
    """The whole server for one organisation. Every surface shares one Context wired with security and
    automation, so flows run whichever surface saved the record. ``background`` runs the in-process bulk worker
    and outbox dispatcher (``keel up``); production can run them as ``keel worker`` instead."""
    return KeelApp(ctx, background=background)


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals to ``run_servers``: each uvicorn server installs its own SIGTERM
    handler, so with two listeners in one process the second replaced the first's, a SIGTERM stopped one of them,
    and the re-raised signal then killed the process before the background workers were stopped."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


# A stopping server waits this long for requests in flight before cancelling them (the supervisor of
# ``keel serve --workers`` allows a little more before SIGKILL).
GRACEFUL_SECONDS = 25


def build_servers(ctx: Context, *, host: str, port: int, https_port: int, log_level: str = "info",
                  background: bool = True) -> tuple[list[uvicorn.Server], KeelApp]:
    app = build_app(ctx, background=background)
    configs = []
    if port:
        configs.append(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                      lifespan="off", timeout_keep_alive=KEEP_ALIVE,
                                      timeout_graceful_shutdown=GRACEFUL_SECONDS))
    if https_port:
        cert, key = certificate_paths(ctx.settings)
        configs.append(uvicorn.Config(app, host=host, port=https_port, log_level=log_level, access_log=False,
                                      ssl_certfile=str(cert), ssl_keyfile=str(key), lifespan="off",
                                      timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=GRACEFUL_SECONDS))
    return [Server(c) for c in configs], app


def run_servers(servers: Sequence[uvicorn.Server], app: KeelApp,
                sockets: Sequence[list[socket.socket] | None] | None = None) -> None:
    """Run the listeners of one process until SIGTERM or SIGINT, which stop all of them gracefully; the
    background workers (if this process runs them) start first and stop last."""

    def stop(*_: Any) -> None:
        for s in servers:  # a second signal stops waiting for requests in flight, as in uvicorn
            s.force_exit = s.should_exit
            s.should_exit = True

    main_thread = threading.current_thread() is threading.main_thread()  # only it may install handlers
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
    listen = list(sockets) if sockets is not None else [None] * len(servers)

    async def main() -> None:
        await asyncio.gather(*(s.serve(sockets=socks) for s, socks in zip(servers, listen, strict=True)))

    app.start_background()  # one set of workers for both listeners (their lifespans are off)
    try:
        asyncio.run(main())
    finally:
        app.stop_background()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(ctx: Context, host: str = "127.0.0.1", port: int = 8080, https_port: int = 0,
          announce: Callable[[str], None] = print) -> None:
    """Serve the API and the web app on HTTP and (when ``https_port``) HTTPS in one process and one Context."""
    servers, app = build_servers(ctx, host=host, port=port, https_port=https_port)
    if port:
        announce(f"HTTP  http://{host}:{port}  (web app at /, API under /services)")
    if https_port:
        cert, _key = certificate_paths(ctx.settings)
        announce(f"HTTPS https://{host}:{https_port}  (certificate: {cert.resolve()})")
    run_servers(servers, app)
