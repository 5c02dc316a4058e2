"""``batched_save`` streams: a sample generator may hand it a generator of drafts, and only one batch of them is
held at a time (a million-applicant sample would not fit in memory as lists of drafts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from keel.apps import samplekit
from keel.context import Context
from keel.services.query import query


def test_batched_save_takes_drafts_as_they_are_made(org: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samplekit, "BATCH", 3)
    held: list[int] = []

    def drafts() -> Iterator[dict[str, Any]]:
        for i in range(8):
            saved = query(org, "SELECT COUNT(Id) n FROM Account")["records"][0]["n"]
            held.append(i - saved)  # drafts made but not yet saved
            yield {"Name": f"A{i}"}

    ids = samplekit.batched_save(org, "Account", drafts())
    assert len(ids) == 8 and len(set(ids)) == 8
    assert max(held) == 2 and held == [0, 1, 2, 0, 1, 2, 0, 1]
    names = [r["Name"] for r in query(org, "SELECT Name FROM Account ORDER BY Id")["records"]]
    assert names == [f"A{i}" for i in range(8)]
