"""Pausing Python's cyclic garbage collector around large batches.

A 10,000-row save allocates a few hundred thousand dicts, lists and row objects, nearly all freed by reference
counting when the batch ends. The cyclic collector, triggered by allocation counts, meanwhile scans them again
and again (and every long-lived object of the process on its full passes): a fifth of a bulk load's time. Pausing
it for the batch and letting it run once afterwards keeps memory bounded by the batch, which is already the unit
of memory in the lifecycle.

The collector is process-wide, so the pause is counted: with several threads saving at once it resumes when the
last of them leaves, and it only resumes if it was running when the first one entered.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_state = {"depth": 0, "was_enabled": False}

LARGE_BATCH = 1000


@contextmanager
def gc_paused(rows: int) -> Iterator[None]:
    """Pause the collector while a batch of ``rows`` rows is processed, if the batch is large."""
    if rows < LARGE_BATCH:
        yield
        return
    with _lock:
        if _state["depth"] == 0:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0 and _state["was_enabled"]:
                gc.enable()
