"""One frozen Settings, loaded once from the environment (and ``keel.toml`` when present)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from keel.storage.engine import DEFAULT_URL


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_URL
    host: str = "127.0.0.1"
    port: int = 8080
    https_port: int = 8443
    workers: int = 1  # server processes of `keel serve` (0: one per CPU); see docs/deploy.md
    data_dir: str = ".keel"
    tls_cert: str | None = None
    tls_key: str | None = None
    secret_key: str = ""
    query_cursor_idle_seconds: int = 900
    query_batch_size: int = 2000
    automation_depth_limit: int = 8
    api_requests_per_minute: int = 6000
    session_idle_minutes: int = 120
    session_absolute_hours: int = 24
    refresh_token_days: int = 90  # OAuth refresh tokens: no idle timeout, this absolute one, revoked with the user
    login_max_failures: int = 5
    slow_query_ms: int = 500
    # Web app file uploads (docs/web.md): allowed extensions and the size limit
    upload_types: str = "pdf,doc,docx,odt,rtf,txt,csv,xlsx,png,jpg,jpeg,gif"
    upload_max_bytes: int = 10 * 1024 * 1024
    # Automation: outbox delivery (docs/automation.md)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_starttls: int = 0  # 1 to upgrade with STARTTLS before login
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "keel@localhost"
    smtp_timeout_seconds: int = 10
    webhook_timeout_seconds: int = 10
    dispatcher_poll_ms: int = 500
    retry_base_seconds: int = 30
    outbox_max_attempts: int = 8
    outbox_lease_seconds: int = 120
    circuit_failure_threshold: int = 5
    circuit_cooldown_seconds: int = 60

    @classmethod
    def load(cls, *, env: dict[str, str] | None = None, toml_path: str | Path | None = None) -> Settings:
        """Defaults, then ``keel.toml``'s ``[keel]`` table, then ``KEEL_*`` environment variables."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        path = Path(toml_path or env.get("KEEL_CONFIG", "keel.toml"))
        if path.is_file():
            values.update(tomllib.loads(path.read_text()).get("keel", {}))
        for f in fields(cls):
            raw = env.get(f"KEEL_{f.name.upper()}")
            if raw is not None:
                values[f.name] = int(raw) if f.type in ("int", int) else raw
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def with_overrides(self, **kw: Any) -> Settings:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})
