"""Group commit for single-record creates: concurrent ``POST /sobjects/X`` calls by the same user on the same
object are written as one ``save_many`` batch.

SQLite has one writer, and most of a one-row save is per-transaction work (id allocation, the schema-version
check, the commit), so under concurrency a burst of creates is far cheaper as one batch. There is no added latency
when idle: the first caller writes at once (leader), callers that arrive while a batch is being written queue up,
and when the leader finishes it hands the queue to the next leader. Batches are ``all_or_none=False``, so each
row keeps its own result; a batch-wide error (a failing hook, an automation loop) falls back to one save per row,
so one caller's bad record can never fail another's. Only callers with the same user and security shape share a
batch, because ``save_many`` checks access for the batch's one actor.

``POST /sobjects/X`` itself reaches here through ``keel.api.batching``, which hands a whole batch of create requests
to one worker thread; their saves are then ``PendingCreate`` rows given to ``save_pending``, with the same grouping
and isolation and no thread blocked per caller. ``submit`` serves the creates that arrive any other way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.errors import ErrorDetail, KeelError, RowResult

MAX_BATCH = 200
log = logging.getLogger("keel.api")
Saver = Callable[[Sequence[dict[str, Any]]], list[RowResult]]


@dataclass
class _Pending:
    draft: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: RowResult | None = None
    lead: bool = False


class GroupCommit:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[Hashable, list[_Pending]] = {}
        self._busy: set[Hashable] = set()

    def submit(self, key: Hashable, draft: dict[str, Any], save: Saver) -> RowResult:
        me = _Pending(draft)
        with self._lock:
            self._queues.setdefault(key, []).append(me)
            leader = key not in self._busy
            if leader:
                self._busy.add(key)
        if not leader:
            me.done.wait()
            if not me.lead:
                assert me.result is not None
                return me.result
        self._run(key, save)
        assert me.result is not None
        return me.result

    def _run(self, key: Hashable, save: Saver) -> None:
        with self._lock:
            queue = self._queues.get(key, [])
            batch, rest = queue[:MAX_BATCH], queue[MAX_BATCH:]
            if rest:
                self._queues[key] = rest
            else:
                self._queues.pop(key, None)
        try:
            results = _save_rows(batch, save)
        finally:
            with self._lock:
                waiting = self._queues.get(key)
                if not waiting:
                    self._busy.discard(key)
                else:
                    waiting[0].lead = True  # hand over: the next caller in line writes the next batch
                    waiting[0].done.set()
        for p, r in zip(batch, results, strict=True):
            p.result = _own(r)
            p.done.set()


def _own(r: RowResult) -> RowResult:
    """A batch row's result as its caller's own one-row save: index 0, errors pointing at row 0."""
    return RowResult(0, r.id, r.created, [ErrorDetail(e.code, e.message, e.fields, 0) for e in r.errors])


def _save_rows(batch: list[_Pending], save: Saver) -> list[RowResult]:
    drafts = [p.draft for p in batch]
    try:
        return save(drafts)
    except KeelError:
        if len(drafts) == 1:
            raise
    out: list[RowResult] = []
    for d in drafts:  # a batch-wide failure: isolate it, one save per row
        try:
            out.extend(save([d]))
        except KeelError as e:
            out.append(RowResult(0, errors=e.details() or [ErrorDetail(e.code, e.message, e.fields, 0)]))
    return out


@dataclass(frozen=True)
class PendingCreate:
    """A single-record create whose save was left to the batch of requests it arrived with
    (``ApiCall.deferred``, ``keel.api.batching``)."""

    key: Hashable
    draft: dict[str, Any]
    save: Saver


def save_pending(pending: Sequence[PendingCreate]) -> list[RowResult | None]:
    """Save deferred creates as ``submit`` would: one batch per key (at most ``MAX_BATCH`` rows), each row with its
    own result (a refusal is that row's errors), a batch-wide failure isolated row by row. Results come back in
    ``pending``'s order; None marks the rows of a batch that failed on a bug (logged), and only those."""
    groups: dict[Hashable, list[int]] = {}
    for i, p in enumerate(pending):
        groups.setdefault(p.key, []).append(i)
    out: list[RowResult | None] = [None] * len(pending)
    for positions in groups.values():
        for start in range(0, len(positions), MAX_BATCH):
            chunk = positions[start:start + MAX_BATCH]
            batch = [_Pending(pending[i].draft) for i in chunk]
            try:
                results = _save_rows(batch, pending[chunk[0]].save)
            except KeelError as e:  # a one-row batch refused as a whole: the row's own error
                results = [RowResult(0, errors=e.details() or [ErrorDetail(e.code, e.message, e.fields, 0)])]
            except Exception:
                log.exception("unhandled error saving a batch of %d creates", len(chunk))
                continue
            for i, r in zip(chunk, results, strict=True):
                out[i] = _own(r)
    return out
