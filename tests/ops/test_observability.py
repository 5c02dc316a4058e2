"""/healthz, /readyz, /metrics, request ids, JSON access logs and the slow-query log."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from keel.api.observability import JsonFormatter, readiness
from keel.context import Context
from keel.storage import migrate
from keel.storage import system as S
from tests.ops.apiclient import V, client_and_token


def test_probes_metrics_and_access_log(org: Context, caplog: pytest.LogCaptureFixture) -> None:
    client, token = client_and_token(org)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["migrations"]["ok"] is True
    with caplog.at_level(logging.INFO, logger="keel.access"):
        r = client.post(f"/services/data/{V}/sobjects/Account", json={"Name": "Metrics"}, auth=None, headers={
            **auth, "X-Request-Id": "req-123"})
        assert r.status_code == 201, r.text
        assert r.headers["x-request-id"] == "req-123"
        q = client.get(f"/services/data/{V}/query", params={"q": "SELECT Id FROM Account"}, headers=auth)
        assert q.status_code == 200
        assert client.get(f"/services/data/{V}/query", params={"q": "SELECT"}, headers=auth).status_code == 400
    lines = [r for r in caplog.records if r.name == "keel.access"]
    created = next(r for r in lines if getattr(r, "fields", {}).get("request_id") == "req-123")
    doc = json.loads(JsonFormatter().format(created))
    assert doc["user"] == "admin@example.com" and doc["status"] == 201 and doc["duration_ms"] > 0
    assert doc["route"] == "data_api:sobjects"
    bad = client.post("/services/oauth2/token", data={"grant_type": "password", "client_id": "x",
                                                      "client_secret": "y", "username": "admin@example.com",
                                                      "password": "wrong"})
    assert bad.status_code >= 400
    text = client.get("/metrics").text
    assert 'keel_http_requests_total{method="POST",route="data_api:sobjects",status="201"} 1.0' in text
    assert 'keel_http_requests_total{method="GET",route="data_api:query",status="400"} 1.0' in text
    assert "keel_http_request_duration_seconds_bucket" in text
    assert 'keel_lifecycle_batch_size_count{operation="save"}' in text
    assert "keel_outbox_depth" in text and "keel_outbox_oldest_age_seconds" in text
    assert "keel_login_failures_total" in text


def test_readyz_fails_on_pending_migrations_and_stale_worker(org: Context) -> None:
    with org.db.transaction() as conn:
        S.set_meta(conn, "worker_heartbeat", "2000-01-01T00:00:00+00:00")
    checks = readiness(org)
    assert checks["worker"]["ok"] is False and checks["migrations"]["ok"] is True
    with org.db.transaction() as conn:
        conn.exec_driver_sql(f'DROP TABLE "{migrate.VERSION_TABLE}"')
        conn.exec_driver_sql('DROP INDEX "ix_keel_outbox_age"')
    client, _ = client_and_token(org)
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["migrations"]["current"] == migrate.BASELINE


def test_slow_queries_are_logged_with_soql_and_sql(org: Context, caplog: pytest.LogCaptureFixture) -> None:
    slow = replace(org, settings=replace(org.settings, slow_query_ms=0))
    client, token = client_and_token(slow)
    with caplog.at_level(logging.WARNING, logger="keel.slow"):
        r = client.get(f"/services/data/{V}/query", params={"q": "SELECT Name FROM Account"},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    fields = [getattr(r, "fields", {}) for r in caplog.records if r.name == "keel.slow"]
    assert any(f.get("soql") == "SELECT Name FROM Account" and "SELECT" in f.get("sql", "") for f in fields)
