"""``keel import`` and ``keel export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keel.cli.common import DbOption, console, context, err_console, friendly_errors


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def data_app(app: typer.Typer) -> None:
    @app.command("import")
    def import_(
        obj: Annotated[str, typer.Argument(metavar="OBJECT")],
        file: Annotated[Path, typer.Argument(metavar="FILE.csv", exists=True, dir_okay=False)],
        upsert_on: Annotated[str | None, typer.Option(help="External id field to match existing records on.")] = None,
        partial: Annotated[bool, typer.Option(help="Commit good rows even when some rows fail.")] = False,
        errors: Annotated[Path | None, typer.Option(help="Where to write the per-row error report.")] = None,
        bulk: Annotated[bool, typer.Option(help="Run as a Bulk API job (durable, resumable, partial success).")]
        = False,
        db: DbOption = None,
    ) -> None:
        """Import a CSV through the record lifecycle (all rows or none, unless --partial)."""
        from keel.services.csvio import ImportFailed, import_csv

        if bulk:
            from keel.cli.jobs import bulk_import

            with friendly_errors():
                bulk_import(context(db), obj, file, upsert_on)
            return

        error_file = errors or file.with_name(file.stem + ".errors.csv")
        with friendly_errors():
            ctx = context(db)
            total = _count_lines(file)
            # Not transient: on a terminal the finished bar stays, and where stderr is a file or pipe (CI logs,
            # cron) Rich prints the final state once instead of nothing, so the log shows how far an import got.
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=err_console) as bar:
                task = bar.add_task(f"Importing {obj}", total=total)
                try:
                    report = import_csv(ctx, obj, file, upsert_on=upsert_on, partial=partial,
                                        progress=lambda n: bar.advance(task, n), error_file=error_file)
                except ImportFailed as e:
                    err_console.print(f"[red]{e.message}[/red] Errors: {error_file}")
                    raise typer.Exit(1) from None
            console.print(f"Imported {report.created} new and {report.updated} updated {obj} record(s); "
                          f"{report.failed_rows} row(s) failed." + (f" Errors: {error_file}" if report.issues else ""))
            if not report.issues and error_file.exists() and errors is None:
                error_file.unlink()

    @app.command("export")
    def export(
        obj: Annotated[str, typer.Argument(metavar="OBJECT")],
        output: Annotated[Path, typer.Option("-o", "--output", help="CSV file to write.")],
        bulk: Annotated[bool, typer.Option(help="Run as a Bulk API query job.")] = False,
        db: DbOption = None,
    ) -> None:
        """Export every visible record of an object to CSV (formula triggers neutralised)."""
        from keel.services.export import export_csv

        if bulk:
            from keel.cli.jobs import bulk_export

            with friendly_errors():
                n = bulk_export(context(db), obj, output)
                console.print(f"Exported {n} {obj} record(s) to {output}.")
            return

        with friendly_errors():
            n = export_csv(context(db), obj, output)
            console.print(f"Exported {n} {obj} record(s) to {output}.")
