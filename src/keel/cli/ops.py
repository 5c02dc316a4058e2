"""Operations commands: ``backup``, ``restore``, ``export-org``, ``import-org`` and ``migrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from keel.cli.common import DbOption, console, context, friendly_errors, resolve_url


def ops_commands(app: typer.Typer) -> None:
    """Register the operations commands on the top-level app."""

    @app.command()
    def backup(out: Annotated[Path, typer.Option("-o", "--output", help="Backup file to write.")],
               db: DbOption = None) -> None:
        """Take a consistent online backup (database, uploaded files, manifest with checksums)."""
        from keel.services.backup import backup as run_backup

        with friendly_errors():
            result = run_backup(context(db), out)
            m = result.manifest
            console.print(f"Backed up {resolve_url(db)} to {result.path} ({len(m['members'])} member(s); system "
                          f"revision {m['system_revision']}, metadata version {m['metadata_schema_version']}).")

    @app.command()
    def restore(file: Annotated[Path, typer.Argument(help="A file written by `keel backup`.")],
                db: DbOption = None) -> None:
        """Restore a backup into an EMPTY database, after verifying every checksum."""
        from keel.services.backup import restore as run_restore

        with friendly_errors():
            m = run_restore(context(db), file)
            console.print(f"Restored {file} (taken {m['created']}) into {resolve_url(db)}.")

    @app.command("export-org")
    def export_org(out: Annotated[Path, typer.Argument(help="Directory to create.")], db: DbOption = None) -> None:
        """Write the whole organisation as plain files: metadata YAML, one CSV per object, system tables."""
        from keel.services.orgio import export_org as run_export

        with friendly_errors():
            m = run_export(context(db), out)
            console.print(f"Exported {sum(m['rows'].values())} row(s) in {len(m['files'])} file(s) to {out}.")

    @app.command("import-org")
    def import_org(src: Annotated[Path, typer.Argument(help="A directory written by `keel export-org`.")],
                   db: DbOption = None) -> None:
        """Load an exported organisation into an EMPTY database (any dialect), keeping every id."""
        from keel.services.orgio import import_org as run_import

        with friendly_errors():
            m = run_import(context(db), src)
            console.print(f"Imported {sum(m['rows'].values())} row(s) from a {m['dialect']} export into "
                          f"{resolve_url(db)}.")

    @app.command()
    def migrate(db: DbOption = None,
                check: Annotated[bool, typer.Option(help="Only report; exit 1 if migrations are pending.")] = False,
                ) -> None:
        """Upgrade Keel's system tables to this version's schema (one transaction)."""
        from keel.metadata import index_sync, search_index
        from keel.services import org, security
        from keel.storage import migrate as m

        with friendly_errors():
            ctx = context(db)
            before = m.status(ctx.db)
            with ctx.db.read() as conn:
                unindexed = [o.api_name for o in search_index.missing(conn)]
                stale = index_sync.pending(conn) if before.up_to_date else []
            unfilled = before.up_to_date and security.sharing_unfilled(ctx)
            standard = org.missing_standard_objects(ctx) if before.up_to_date else []
            if before.up_to_date and not unindexed and not unfilled and not standard and not stale:
                console.print(f"System tables are current (revision {before.head}).")
                return
            if check:
                if not before.up_to_date:
                    console.print(f"Pending: revision {before.current} -> {before.head}.")
                if standard:
                    console.print(f"Pending: new standard objects {', '.join(standard)}.")
                if unindexed:
                    console.print(f"Pending: search indexes for {len(unindexed)} object(s).")
                if stale:
                    console.print(f"Pending: list and report indexes to rebuild on {len(stale)} table(s).")
                if unfilled:
                    console.print("Pending: a sharing recalculation (managers' inherited shares).")
                raise typer.Exit(1)
            if before.up_to_date:
                console.print(f"System tables are current (revision {before.head}).")
            else:
                after = m.upgrade(ctx.db)
                console.print(f"Migrated system tables from revision {before.current} to {after.current}.")
            added = org.add_missing_standard_objects(ctx)
            if added:
                console.print(f"Added standard objects: {', '.join(added)}.")
            built = search_index.build_missing(ctx.db)
            if built:
                console.print(f"Built search indexes for {len(built)} object(s).")
            synced = index_sync.sync(ctx.db)
            if synced:
                console.print(f"Rebuilt list and report indexes on {len(synced)} table(s): "
                              f"{sum(len(p.create) for p in synced)} created, {sum(len(p.drop) for p in synced)} "
                              "dropped.")
            if security.sharing_unfilled(ctx):  # an upgrade through 0004: fill the derived sharing tables
                security.recalculate_sharing(security.system_context(ctx, "keel migrate: fill sharing tables"))
                console.print("Recalculated sharing: managers inherit their subordinates' shares.")


def asgi_app() -> Any:
    """An ASGI app factory for process managers that fork several workers, each with its own engine and pool:

        uvicorn --factory keel.cli.ops:asgi_app --workers 4 --host 127.0.0.1 --port 8080
        gunicorn -k uvicorn_worker.UvicornWorker -w 4 'keel.cli.ops:asgi_app()'

    Configuration comes from ``KEEL_*`` variables and ``keel.toml`` as for every command. It refuses to start on a
    database with pending migrations, and logs JSON lines (one per request) to stderr."""
    from keel.api.observability import configure_json_logging
    from keel.cli.asgi import build_app
    from keel.metadata.search_index import require_built as require_search_indexes
    from keel.storage.migrate import require_current

    configure_json_logging()
    ctx = context(None)
    require_current(ctx.db)
    require_search_indexes(ctx.db)
    return build_app(ctx)
