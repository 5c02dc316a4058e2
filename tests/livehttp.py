"""A Keel app served by uvicorn on a free loopback port in a background thread, for tests that need real HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import requests
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, *, lifespan: Literal["on", "off"] = "off", timeout: float = 30) -> Iterator[str]:
    """Serve ``app`` until the block ends (and check that it stopped); yields its base URL. With
    ``lifespan="on"`` the ASGI lifespan starts and stops the app's background workers, as ``keel serve`` does."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan=lifespan))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.time() + timeout
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive(), "the test server did not stop"


class LocalSession(requests.Session):
    """Sends ``*.salesforce.com`` URLs (clients that hard-code Salesforce's login and instance hosts, such as
    simple-salesforce) to the local HTTPS server at ``target`` (host:port), trusting ``cert``."""

    def __init__(self, target: str, cert: str) -> None:
        super().__init__()
        self.target = target
        self.verify = cert
        self.trust_env = False

    def request(self, method: str | bytes, url: str | bytes, *a: Any, **kw: Any) -> requests.Response:
        u = urlsplit(str(url))
        if (u.hostname or "").endswith("salesforce.com"):
            url = urlunsplit(("https", self.target, u.path, u.query, u.fragment))
        return super().request(method, url, *a, **kw)
