"""One ASGI app for the whole server: the API's paths go to the API app, everything else to the web app.

``cli`` sits above both ``web`` and ``api`` (which must not import each other), so the dispatcher lives here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.api.app import create_app
from keel.api.tls import certificate_paths
from keel.context import Context
from keel.services.automation import start_dispatcher, wire_automation
from keel.services.bulk_worker import BulkWorker
from keel.web.app import create_web_app

# simple-salesforce's bulk clients poll every 5 s on one keep-alive connection; uvicorn's default 5 s idle timeout
# races them (the client reuses a socket the server is closing), so keep idle connections longer.
KEEP_ALIVE = 75
API_PREFIXES = ("/services", "/id", "/healthz", "/readyz", "/metrics")


def build_app(ctx: Context, *, background: bool = True) -> ASGIApp:
    """The whole server for one organisation. Every surface shares one Context wired with security and
    automation, so flows run whichever surface saved the record. ``background`` starts the in-process bulk worker
    and outbox dispatcher (``keel up``); production can run them as ``keel worker`` instead."""
    ctx = wire_automation(ctx)
    api = create_app(ctx)
    web = create_web_app(ctx)
    if background:
        api.state.bulk_worker = BulkWorker(ctx).start()
        api.state.dispatcher = start_dispatcher(ctx)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "lifespan":
            await api(scope, receive, send)
            return
        target = api if any(path == p or path.startswith(p + "/") for p in API_PREFIXES) else web
        await target(scope, receive, send)

    return app


def build_servers(ctx: Context, *, host: str, port: int, https_port: int,
                  log_level: str = "info") -> list[uvicorn.Server]:
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
    return [uvicorn.Server(c) for c in configs]


def serve(ctx: Context, host: str = "127.0.0.1", port: int = 8080, https_port: int = 0,
          announce: Callable[[str], None] = print) -> None:
    """Serve the API and the web app on HTTP and (when ``https_port``) HTTPS in one process and one Context."""
    servers = build_servers(ctx, host=host, port=port, https_port=https_port)
    if port:
        announce(f"HTTP  http://{host}:{port}  (web app at /, API under /services)")
    if https_port:
        cert, _key = certificate_paths(ctx.settings)
        announce(f"HTTPS https://{host}:{https_port}  (certificate: {cert.resolve()})")

    async def main() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(main())
