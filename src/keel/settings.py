"""One frozen Settings, loaded once from the environment (and ``keel.toml`` when present)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from keel.errors import KeelError
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
    # Bulk API limits (docs/bulk.md); the names keep the KEEL_BULK_* variables they always had
    bulk_max_upload_bytes: int = 150 * 1024 * 1024
    bulk_max_job_bytes: int = 2 * 1024 * 1024 * 1024
    bulk_max_active_jobs_per_user: int = 25
    bulk_retention_days: int = 7
    bulk_chunk_rows: int = 10_000
    bulk_poll_seconds: float = 0.5

    @classmethod
    def load(cls, *, env: Mapping[str, str] | None = None, toml_path: str | Path | None = None) -> Settings:
        """Defaults, then ``keel.toml``'s ``[keel]`` table, then ``KEEL_*`` environment variables. A value of the
        wrong type fails here with ``SETTINGS_INVALID`` naming its source, rather than later inside a request."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        path = Path(toml_path or env.get("KEEL_CONFIG", "keel.toml"))
        if path.is_file():
            try:
                table = tomllib.loads(path.read_text()).get("keel", {})
            except tomllib.TOMLDecodeError as e:
                raise KeelError(f"{path} is not valid TOML: {e}", code="SETTINGS_INVALID") from e
            for f in fields(cls):
                if f.name in table:  # unknown keys are ignored: one file may serve several Keel versions
                    values[f.name] = _coerce(f.name, str(f.type), table[f.name], f"keel.{f.name} in {path}")
        for f in fields(cls):
            raw = env.get(f"KEEL_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f.name, str(f.type), raw, f"KEEL_{f.name.upper()}")
        return cls(**values)

    def with_overrides(self, **kw: Any) -> Settings:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


def _coerce(name: str, type_name: str, value: Any, source: str) -> Any:
    """Environment values are text and TOML values are typed; both end as the field's type or a clear error."""
    kind = type_name.split(" |")[0]
    try:
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(value)
            return float(value)
    except ValueError:
        raise KeelError(f"{source} must be {'an integer' if kind == 'int' else 'a number'}, not {value!r}.",
                        code="SETTINGS_INVALID", fields=[name]) from None
    if not isinstance(value, str):
        raise KeelError(f"{source} must be text, not {value!r}.", code="SETTINGS_INVALID", fields=[name])
    return value
