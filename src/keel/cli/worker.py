"""``keel worker``: the production outbox dispatcher and scheduled-path runner, one process per worker.

Several workers can share one queue: claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and rows a dead worker
was delivering are claimed again when their lease expires (with the same idempotency key).
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from keel.cli.common import DbOption, console, context, friendly_errors


def worker(
    db: DbOption = None,
    once: Annotated[bool, typer.Option(help="Deliver what is due now, then exit.")] = False,
) -> None:
    """Deliver outbox email and webhooks and fire due scheduled paths until stopped (SIGTERM/SIGINT)."""
    from keel.services.automation import (
        deliver_pending,
        dispatcher,
        fire_due_scheduled,
        wire_automation,
        with_heartbeat,
    )

    with friendly_errors():
        ctx = wire_automation(context(db))
        if once:
            fired = fire_due_scheduled(ctx)
            stats = deliver_pending(ctx)
            console.print(f"delivered {stats.delivered}, retrying {stats.failed}, dead {stats.dead}, "
                          f"scheduled {fired}")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        console.print("keel worker: delivering (Ctrl-C to stop)")
        from keel.services.bulk_worker import BulkWorker

        bulk = BulkWorker(ctx).start()  # Bulk API jobs, resumable after a crash; several workers may share them
        dispatcher(ctx).run_forever(stop, fire_scheduled=with_heartbeat(fire_due_scheduled))
        bulk.stop()
