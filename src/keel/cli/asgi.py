"""One ASGI app for the whole server: the API's paths go to the API app, everything else to the web app.

``cli`` sits above both ``web`` and ``api`` (which must not import each other), so the dispatcher lives here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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
        target = self.api if any(path == p or path.startswith(p + "/") for p in API_PREFIXES) else self.web
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


def build_servers(ctx: Context, *, host: str, port: int, https_port: int,
                  log_level: str = "info") -> tuple[list[uvicorn.Server], KeelApp]:
    app = build_app(ctx)
    configs = []
    if port:
        configs.append(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                      lifespan="off", timeout_keep_alive=KEEP_ALIVE))
    if https_port:
        cert, key = certificate_paths(ctx.settings)
        configs.append(uvicorn.Config(app, host=host, port=https_port, log_level=log_level, access_log=False,
                                      ssl_certfile=str(cert), ssl_keyfile=str(key), lifespan="off",
                                      timeout_keep_alive=KEEP_ALIVE))
    return [uvicorn.Server(c) for c in configs], app


def serve(ctx: Context, host: str = "127.0.0.1", port: int = 8080, https_port: int = 0,
          announce: Callable[[str], None] = print) -> None:
    """Serve the API and the web app on HTTP and (when ``https_port``) HTTPS in one process and one Context."""
    servers, app = build_servers(ctx, host=host, port=port, https_port=https_port)
    if port:
        announce(f"HTTP  http://{host}:{port}  (web app at /, API under /services)")
    if https_port:
        cert, _key = certificate_paths(ctx.settings)
        announce(f"HTTPS https://{host}:{https_port}  (certificate: {cert.resolve()})")

    async def main() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    app.start_background()  # one set of workers for both listeners (their lifespans are off)
    try:
        asyncio.run(main())
    finally:
        app.stop_background()
