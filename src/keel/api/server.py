"""Running the server: uvicorn on HTTP and on HTTPS in one process, sharing one app (and so one Context)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import uvicorn

from keel.api.app import create_app
from keel.api.tls import certificate_paths
from keel.context import Context

# simple-salesforce's bulk clients poll every 5 s on one keep-alive connection; uvicorn's default 5 s idle timeout
# races them (the client reuses a socket the server is closing), so keep connections longer.
KEEP_ALIVE = 75


def build_servers(ctx: Context, *, host: str, port: int, https_port: int, log_level: str = "info",
                  ) -> tuple[list[uvicorn.Server], Path | None]:
    app = create_app(ctx)
    from keel.services.bulk_worker import BulkWorker

    app.state.bulk_worker = BulkWorker(ctx).start()  # bulk jobs run in-process (daemon thread)
    configs = []
    if port:
        configs.append(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                      lifespan="off", timeout_keep_alive=KEEP_ALIVE))
    cert: Path | None = None
    if https_port:
        cert, key = certificate_paths(ctx.settings)
        configs.append(uvicorn.Config(app, host=host, port=https_port, log_level=log_level, access_log=False,
                                      ssl_certfile=str(cert), ssl_keyfile=str(key), lifespan="off",
                                      timeout_keep_alive=KEEP_ALIVE))
    return [uvicorn.Server(c) for c in configs], cert


def serve(ctx: Context, *, host: str = "127.0.0.1", port: int = 8080, https_port: int = 0,
          announce: Callable[[str], None] = print) -> None:
    servers, cert = build_servers(ctx, host=host, port=port, https_port=https_port)
    if port:
        announce(f"HTTP  http://{host}:{port}")
    if cert is not None:
        announce(f"HTTPS https://{host}:{https_port}  (certificate: {cert.resolve()}; trust it with "
                 f"REQUESTS_CA_BUNDLE={cert.resolve()} or NODE_EXTRA_CA_CERTS={cert.resolve()})")

    async def main() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(main())
