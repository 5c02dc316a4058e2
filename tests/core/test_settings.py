"""The one settings model: defaults, ``keel.toml`` and ``KEEL_*`` variables, in that order of priority, with typed
values and the bulk limits among them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from keel.context import Context
from keel.errors import KeelError
from keel.services import bulk
from keel.settings import Settings

TOML = """
[keel]
port = 9090
slow_query_ms = 250
upload_types = "pdf,png"
bulk_chunk_rows = 500
bulk_poll_seconds = 2
bulk_max_active_jobs_per_user = 1
a_setting_of_a_later_version = "ignored"

[other_tool]
port = 1
"""


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "keel.toml"
    path.write_text(TOML)
    return path


def test_file_then_environment_over_defaults(toml: Path) -> None:
    s = Settings.load(env={}, toml_path=toml)
    assert (s.port, s.slow_query_ms, s.upload_types, s.bulk_chunk_rows) == (9090, 250, "pdf,png", 500)
    assert s.bulk_poll_seconds == 2.0 and isinstance(s.bulk_poll_seconds, float)
    assert s.https_port == Settings().https_port and s.bulk_max_upload_bytes == 150 * 1024 * 1024
    env = {"KEEL_PORT": "7070", "KEEL_BULK_CHUNK_ROWS": "42", "KEEL_BULK_POLL_SECONDS": "0.1",
           "KEEL_UPLOAD_MAX_BYTES": "2048", "KEEL_CONFIG": "/nonexistent/ignored.toml"}
    s = Settings.load(env=env, toml_path=toml)
    assert (s.port, s.bulk_chunk_rows, s.bulk_poll_seconds, s.upload_max_bytes) == (7070, 42, 0.1, 2048)
    assert s.slow_query_ms == 250, "a key the environment does not set still comes from the file"


def test_keel_config_names_the_file(toml: Path) -> None:
    assert Settings.load(env={"KEEL_CONFIG": str(toml)}).port == 9090
    assert Settings.load(env={"KEEL_CONFIG": str(toml.parent / "missing.toml")}).port == Settings().port


@pytest.mark.parametrize(("source", "value", "message"), [
    ("env", "KEEL_PORT=eighty", "KEEL_PORT must be an integer, not 'eighty'"),
    ("env", "KEEL_BULK_POLL_SECONDS=soon", "KEEL_BULK_POLL_SECONDS must be a number"),
    ("toml", "port = 80.5", "keel.port in {path} must be an integer, not 80.5"),
    ("toml", "port = true", "keel.port in {path} must be an integer"),
    ("toml", "secret_key = 12", "keel.secret_key in {path} must be text"),
    ("toml", "port = ", "is not valid TOML"),
])
def test_wrong_types_fail_with_a_stable_code(tmp_path: Path, source: str, value: str, message: str) -> None:
    path = tmp_path / "keel.toml"
    env: dict[str, str] = {}
    if source == "env":
        name, raw = value.split("=", 1)
        env[name] = raw
        path.write_text("[keel]\n")
    else:
        path.write_text(f"[keel]\n{value}\n")
    with pytest.raises(KeelError) as e:
        Settings.load(env=env, toml_path=path)
    assert e.value.code == "SETTINGS_INVALID" and message.format(path=path) in e.value.message, e.value.message


def test_bulk_limits_come_from_the_settings(org: Context, toml: Path) -> None:
    """The per-user job limit of the file holds for real job creation, and the KEEL_BULK_* variable lifts it."""
    bulk.ensure_tables(org)
    from_file = replace(org, settings=Settings.load(env={}, toml_path=toml))
    assert bulk.limits(from_file).chunk_rows == 500 and bulk.limits(from_file).poll_seconds == 2.0
    bulk.create_job(from_file, {"object": "Account", "operation": "insert"}, job_type="V2Ingest")
    with pytest.raises(KeelError) as refused:
        bulk.create_job(from_file, {"object": "Account", "operation": "insert"}, job_type="V2Ingest")
    assert refused.value.code == "LIMIT_EXCEEDED"
    lifted = replace(org, settings=Settings.load(env={"KEEL_BULK_MAX_ACTIVE_JOBS_PER_USER": "2"}, toml_path=toml))
    bulk.create_job(lifted, {"object": "Account", "operation": "insert"}, job_type="V2Ingest")


def test_a_command_reads_keel_toml_from_its_working_directory(sqlite_template: Path, tmp_path: Path) -> None:
    """A real `keel` process finds the database named only in ./keel.toml, and the environment wins over it."""
    db = tmp_path / "org.db"
    db.write_bytes(sqlite_template.read_bytes())
    (tmp_path / "keel.toml").write_text(f'[keel]\ndatabase_url = "sqlite:///{db}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    cmd = [sys.executable, "-m", "keel.cli.main", "migrate", "--check"]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "System tables are current" in r.stdout, r.stdout + r.stderr
    bad = subprocess.run(cmd, env={**env, "KEEL_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0, "the environment's (empty) database was used instead of the file's"
    assert not (tmp_path / "keel.db").exists()
