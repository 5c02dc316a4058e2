"""Group commit: concurrent single-record creates share batches, yet every caller gets exactly its own result."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from apihelp import ADMIN, NOAPI, NOAPI_PW, USER, USER_PW, Live

from keel.api.batching import RequestBatcher
from keel.api.groupcommit import GroupCommit, PendingCreate, save_pending
from keel.errors import ErrorDetail, KeelError, RowResult
from keel.security import sessions


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


def test_deferred_creates_save_one_batch_per_key_in_order() -> None:
    calls: list[tuple[str, list[int]]] = []

    def saver(key: str) -> Any:
        def save(drafts: Sequence[dict[str, Any]]) -> list[RowResult]:
            calls.append((key, [d["n"] for d in drafts]))
            if any(d.get("poison") for d in drafts):
                raise KeelError("hook exploded", code="HOOK_FAILED")
            return [RowResult(i, f"{key}{d['n']}", True) for i, d in enumerate(drafts)]
        return save

    pending = [PendingCreate(k, {"n": n, "poison": n == 4}, saver(k))
               for n, k in enumerate(["a", "b", "a", "b", "a", "a"])]
    results = save_pending(pending)
    assert [r.id for r in results] == ["a0", "b1", "a2", "b3", None, "a5"]
    assert results[4].errors[0].code == "HOOK_FAILED" and results[4].errors[0].index == 0
    assert all(r.index == 0 for r in results)
    # one batch per key; the poisoned batch falls back to one save per row
    assert calls == [("a", [0, 2, 4, 5]), ("a", [0]), ("a", [2]), ("a", [4]), ("a", [5]), ("b", [1, 3])]


def test_request_batcher_groups_waiting_requests_and_keeps_answers_apart() -> None:
    seen: list[list[int]] = []

    def handle(items: Sequence[int]) -> list[str]:
        seen.append(list(items))
        time.sleep(0.02)  # the first batch is still running while the others arrive
        return [f"r{i}" for i in items]

    batcher: RequestBatcher[int, str] = RequestBatcher(handle, max_batch=5)

    async def burst() -> list[str]:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.005)
        rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 12)))
        return [await first, *rest]

    assert asyncio.run(burst()) == [f"r{i}" for i in range(12)]
    assert seen[0] == [0]  # an idle server does not wait to fill a batch
    assert sorted(i for b in seen for i in b) == list(range(12))
    assert max(len(b) for b in seen) == 5 and len(seen) >= 3


def test_request_batcher_fails_only_the_batch_that_failed() -> None:
    def handle(items: Sequence[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("boom")
        return list(items)

    batcher: RequestBatcher[int, int] = RequestBatcher(handle)

    async def run() -> tuple[BaseException | int, int]:
        bad = await asyncio.gather(batcher.submit(13), return_exceptions=True)
        return bad[0], await batcher.submit(7)

    bad, good = asyncio.run(run())
    assert isinstance(bad, RuntimeError) and good == 7


def test_a_burst_of_creates_from_several_users_answers_each_as_its_own(live: Live, admin_token: str) -> None:
    """Creates handled in one batch are still authorised one by one: a bad token, a user without API access, a
    user without the object, a bad value and good records from two users, all at once."""
    user_token = live.login(USER, USER_PW)
    noapi_token = sessions.authenticate(live.ctx, NOAPI, NOAPI_PW, ip="127.0.0.1").token  # a web UI session
    url = f"{live.http}/services/data/v59.0/sobjects/"
    cases: list[tuple[str, str, dict[str, Any], int, str]] = []
    for n in range(6):
        cases += [
            (admin_token, "Widget__c", {"Name": f"burst-admin-{n}"}, 201, ""),
            (user_token, "Widget__c", {"Name": f"burst-user-{n}"}, 201, ""),
            (user_token, "Widget__c", {"Name": f"burst-bad-{n}", "Color__c": "Purple"}, 400,
             "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
            (user_token, "PermissionSet", {"Name": f"burst_{n}", "Label": f"burst {n}"}, 404, "NOT_FOUND"),
            (noapi_token, "Widget__c", {"Name": f"burst-noapi-{n}"}, 403, "API_CURRENTLY_DISABLED"),
            ("not-a-session", "Widget__c", {"Name": f"burst-anon-{n}"}, 401, "INVALID_SESSION_ID"),
        ]
    out: dict[int, httpx.Response] = {}

    def post(i: int) -> None:
        token, obj, body, _, _ = cases[i]
        out[i] = httpx.post(url + obj, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    made: dict[str, str] = {}
    for i, (_, _, body, status, code) in enumerate(cases):
        r = out[i]
        assert r.status_code == status, (body, r.text)
        if code:
            assert r.json()[0]["errorCode"] == code, (body, r.text)
        if status == 201:
            made[r.json()["id"]] = body["Name"]
    h = {"Authorization": f"Bearer {admin_token}"}
    names = "','".join(made.values())
    q = httpx.get(f"{live.http}/services/data/v59.0/query", headers=h,
                  params={"q": f"SELECT Id, Name, CreatedBy.Username FROM Widget__c WHERE Name IN ('{names}')"})
    rows = {r["Id"]: r for r in q.json()["records"]}
    assert {k: v["Name"] for k, v in rows.items()} == made  # every id is the caller's own record
    for row in rows.values():
        assert row["CreatedBy"]["Username"] == (USER if "-user-" in row["Name"] else ADMIN)


def test_request_batcher_serves_a_request_made_as_the_last_batch_ends() -> None:
    """A caller answered by a batch that emptied the queue runs before that drain's task is marked done: a request
    it makes at once must still start a drain, not wait for somebody else's request to start one."""
    batcher: RequestBatcher[int, int] = RequestBatcher(lambda items: [i * 10 for i in items])

    async def back_to_back() -> list[int]:
        return [await batcher.submit(i) for i in range(5)]  # each submit runs inline, as the caller resumes

    assert asyncio.run(asyncio.wait_for(back_to_back(), 5)) == [0, 10, 20, 30, 40]
