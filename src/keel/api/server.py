"""Running the server: uvicorn on HTTP, and on HTTPS with a self-signed certificate when none is configured."""

from __future__ import annotations

import asyncio

import uvicorn

from keel.api.app import create_app
from keel.context import Context


def serve(ctx: Context, *, host: str = "127.0.0.1", port: int = 8080, https_port: int = 0) -> None:
    app = create_app(ctx)
    configs = [uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)]
    servers = [uvicorn.Server(c) for c in configs]

    async def main() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(main())
