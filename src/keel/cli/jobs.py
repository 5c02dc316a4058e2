"""``keel jobs list/show/abort`` and the ``--bulk`` paths of ``keel import`` / ``keel export``.

A ``--bulk`` import is an ordinary Bulk 2.0 job: the file is uploaded durably, then processed chunk by chunk by the
same worker code the server runs (here in a thread of the CLI process), with a Rich progress bar on the job's
counters. If the CLI dies, ``keel up`` (or the next ``keel import --bulk``… of that job) resumes it.
"""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.cli.common import DbOption, console, context, err_console, friendly_errors
from keel.context import Context

jobs_app = typer.Typer(help="Bulk API jobs.", no_args_is_help=True)


@jobs_app.command("list")
def list_cmd(db: DbOption = None, limit: Annotated[int, typer.Option(help="How many jobs to show.")] = 50) -> None:
    """Recent bulk jobs, newest first."""
    from keel.services.bulk import list_jobs

    with friendly_errors():
        t = Table("Id", "Type", "Operation", "Object", "State", "Processed", "Failed", "Created")
        for j in list_jobs(context(db), limit=limit):
            t.add_row(j.id, j.job_type, j.operation, j.object, j.state, str(j.processed), str(j.failed),
                      f"{j.created:%Y-%m-%d %H:%M:%S}" if j.created else "")
        console.print(t)


@jobs_app.command("show")
def show_cmd(job_id: Annotated[str, typer.Argument(metavar="JOB_ID")], db: DbOption = None) -> None:
    """Every field of one job, and its batches."""
    from keel.services import bulk as B

    with friendly_errors():
        ctx = context(db)
        with ctx.db.read() as conn:
            job = B.read_job(ctx, conn, job_id)
            ups = B.uploads_of(conn, job.pk)
        for name in ("id", "job_type", "operation", "object", "state", "external_id", "delimiter", "line_ending",
                     "query", "processed", "failed", "error", "created", "started", "completed", "total_ms"):
            value = getattr(job, name)
            if value not in (None, ""):
                console.print(f"[bold]{name}[/bold]: {value}")
        for u in ups:
            console.print(f"  batch {u['seq']}: {u['state']} rows {u['rows_done']} failed {u['rows_failed']} "
                          f"({u['size']} bytes)")


@jobs_app.command("abort")
def abort_cmd(job_id: Annotated[str, typer.Argument(metavar="JOB_ID")], db: DbOption = None) -> None:
    """Abort an open or running job; records already written stay, the rest are unprocessed."""
    from keel.services.bulk import set_state

    with friendly_errors():
        job = set_state(context(db), job_id, "Aborted")
        console.print(f"Job {job.id} is {job.state}.")


def _count_rows(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def run_with_progress(ctx: Context, job_id: str, total: int, label: str) -> None:
    """Run the job in a worker thread of this process and show its counters."""
    from keel.services import bulk as B
    from keel.services.bulk_worker import run_job
    from keel.storage import ids

    pk = ids.decode(job_id, B.JOB_PREFIX)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_job(ctx, pk)
        except BaseException as e:  # surfaced below; the job itself is marked Failed by run_job
            errors.append(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=not os.isatty(2)) as bar:
        task = bar.add_task(label, total=total or None)
        while t.is_alive():
            t.join(0.3)
            with ctx.db.read() as conn:
                job = B.read_job(ctx, conn, job_id)
            bar.update(task, completed=job.processed)
    if errors:
        raise errors[0]


def bulk_import(ctx: Context, obj: str, file: Path, upsert_on: str | None) -> None:
    from keel.services import bulk as B

    B.ensure_tables(ctx)
    spec = {"object": obj, "operation": "upsert" if upsert_on else "insert", "externalIdFieldName": upsert_on}
    job = B.create_job(ctx, spec, job_type="V2Ingest")
    up = B.Upload(ctx, job)
    try:
        with open(file, "rb") as f:
            while data := f.read(1 << 20):
                up.write(data)
        up.commit()
    except BaseException:
        up.discard()
        raise
    B.set_state(ctx, job.id, "UploadComplete")
    run_with_progress(ctx, job.id, _count_rows(file), f"Bulk {job.operation} {obj} ({job.id})")
    with ctx.db.read() as conn:
        done = B.read_job(ctx, conn, job.id)
    if done.state != "JobComplete":
        err_console.print(f"[red]Job {done.id} {done.state}[/red]: {done.error or ''}")
        raise typer.Exit(1)
    console.print(f"Job {done.id}: {done.processed} row(s) processed, {done.failed} failed.")
    if done.failed:
        from keel.services.bulk_results import ingest_results

        errors = file.with_name(file.stem + ".errors.csv")
        with open(errors, "wb") as out:
            for chunk in ingest_results(ctx, done, "failedresults"):
                out.write(chunk)
        console.print(f"Failed rows with their errors: {errors}")


def bulk_export(ctx: Context, obj: str, output: Path) -> int:
    """A query job; the result file is copied with spreadsheet formula triggers neutralised."""
    from keel.services import bulk as B
    from keel.services.csvio import neutralise
    from keel.services.export import exportable_fields

    B.ensure_tables(ctx)
    fields = exportable_fields(ctx, obj)
    job = B.create_job(ctx, {"operation": "query", "query": f"SELECT {', '.join(fields)} FROM {obj}"},
                       job_type="V2Query")
    run_with_progress(ctx, job.id, 0, f"Bulk export {obj} ({job.id})")
    with ctx.db.read() as conn:
        done = B.read_job(ctx, conn, job.id)
        res = [u for u in B.uploads_of(conn, done.pk) if u["kind"] == "result"]
    if done.state != "JobComplete" or not res:
        err_console.print(f"[red]Job {done.id} {done.state}[/red]: {done.error or ''}")
        raise typer.Exit(1)
    n = 0
    with open(res[0]["result_path"], encoding="utf-8", newline="") as src, \
            open(output, "w", encoding="utf-8", newline="") as dst:
        w = csv.writer(dst)
        for i, r in enumerate(csv.reader(src)):
            w.writerow(r if i == 0 else [neutralise(v) for v in r])
            n += 1 if i else 0
    return n
