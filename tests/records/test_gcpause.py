"""The collector pause around large batches is counted across threads and restores what it found."""

from __future__ import annotations

import gc
import threading

from keel.records.gcpause import LARGE_BATCH, gc_paused


def test_small_batches_leave_the_collector_alone() -> None:
    assert gc.isenabled()
    with gc_paused(LARGE_BATCH - 1):
        assert gc.isenabled()


def test_overlapping_pauses_resume_when_the_last_one_ends() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused(LARGE_BATCH):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with gc_paused(LARGE_BATCH):
        assert not gc.isenabled()
        t.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other batch is still running
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused(LARGE_BATCH):
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
