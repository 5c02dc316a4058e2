"""Group commit: concurrent single-record creates share batches, yet every caller gets exactly its own result."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from apihelp import Live

from keel.api.groupcommit import GroupCommit
from keel.errors import ErrorDetail, KeelError, RowResult


def test_batches_form_under_concurrency_and_results_stay_with_their_callers() -> None:
    gc = GroupCommit()
    sizes: list[int] = []

    def save(drafts: Sequence[dict[str, Any]]) -> list[RowResult]:
        sizes.append(len(drafts))
        time.sleep(0.01)
        return [RowResult(i, None if d["n"] % 7 == 0 else f"id{d['n']}", True,
                          [ErrorDetail("BAD", f"bad {d['n']}")] if d["n"] % 7 == 0 else [])
                for i, d in enumerate(drafts)]

    results: dict[int, RowResult] = {}

    def call(n: int) -> None:
        results[n] = gc.submit("k", {"n": n}, save)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == list(range(64))
    for n, r in results.items():
        if n % 7 == 0:
            assert r.errors[0].message == f"bad {n}" and r.id is None
        else:
            assert r.id == f"id{n}" and not r.errors
    assert sum(sizes) == 64 and max(sizes) > 1


def test_a_batch_wide_failure_is_isolated_per_row() -> None:
    gc = GroupCommit()

    def save(drafts: Sequence[dict[str, Any]]) -> list[RowResult]:
        if any(d.get("poison") for d in drafts):
            raise KeelError("hook exploded", code="HOOK_FAILED")
        return [RowResult(i, "ok", True) for i in range(len(drafts))]

    assert gc.submit("k", {}, save).id == "ok"
    with pytest.raises(KeelError):
        gc.submit("k", {"poison": True}, save)


def test_concurrent_creates_over_http(live: Live, admin_token: str) -> None:
    base = f"{live.http}/services/data/v59.0/sobjects/Widget__c"
    h = {"Authorization": f"Bearer {admin_token}"}
    out: dict[int, httpx.Response] = {}

    def post(n: int) -> None:
        body = {"Name": f"gc{n}"} if n % 5 else {"Name": f"gc{n}", "Color__c": "Purple"}
        out[n] = httpx.post(base, json=body, headers=h, timeout=60)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for n, r in out.items():
        if n % 5:
            assert r.status_code == 201, r.text
            got = httpx.get(f"{base}/{r.json()['id']}", headers=h).json()
            assert got["Name"] == f"gc{n}"
        else:
            assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
