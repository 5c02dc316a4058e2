"""Who is calling: bearer tokens (``Bearer`` and ``OAuth`` schemes), API permission, and rate limits.

Tokens are resolved by the security layer through the ``AuthBackend``; this module only reads headers and keeps
the per-minute request counters. The counters live on the app (``app.state.limits``), never in module globals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer|OAuth <t>`` or of Bulk 1.0's ``X-SFDC-Session``."""
    raw = headers.get("authorization")
    if raw:
        scheme, _, token = raw.strip().partition(" ")
        if scheme.lower() in ("bearer", "oauth") and token.strip():
            return token.strip()
        return None
    session = headers.get("x-sfdc-session")
    return session.strip() if session and session.strip() else None


@dataclass
class RateLimiter:
    """Fixed one-minute windows per key (user and token), plus a daily counter for ``Sforce-Limit-Info``.

    A fixed window is enough to stop a runaway script, costs one dict lookup per request, and its reset time gives
    an honest ``Retry-After``.
    """

    per_minute: int
    clock: object = time.monotonic
    _windows: dict[str, tuple[int, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _day: int = -1
    used_today: int = 0

    @property
    def daily_max(self) -> int:
        return max(self.per_minute * 60 * 24, 15000)

    def hit(self, keys: tuple[str, ...]) -> int | None:
        """Count one request for every key; return the seconds to wait when any key is over its limit."""
        now = time.time()
        minute = int(now // 60)
        day = int(now // 86400)
        with self._lock:
            if day != self._day:
                self._day, self.used_today = day, 0
            retry: int | None = None
            for key in keys:
                start, count = self._windows.get(key, (minute, 0))
                if start != minute:
                    start, count = minute, 0
                if count >= self.per_minute:
                    retry = max(1, int((minute + 1) * 60 - now) + 1)
                    continue
                self._windows[key] = (start, count + 1)
            if retry is None:
                self.used_today += 1
            if len(self._windows) > 100_000:  # forget idle keys
                self._windows = {k: v for k, v in self._windows.items() if v[0] == minute}
            return retry

    def usage_header(self) -> str:
        return f"api-usage={self.used_today}/{self.daily_max}"
