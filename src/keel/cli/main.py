"""``keel``: initialise, run, change metadata, move data, and administer users."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from keel.cli.apps import app_app
from keel.cli.common import DbOption, console, context, friendly_errors, resolve_url
from keel.cli.data import data_app
from keel.cli.jobs import jobs_app
from keel.cli.ops import ops_commands
from keel.cli.query import query_command
from keel.cli.users import user_app
from keel.cli.worker import worker
from keel.metadata.search_index import require_built as require_search_indexes
from keel.storage.migrate import require_current

app = typer.Typer(help="Keel: a metadata-driven CRM that speaks Salesforce's APIs.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(user_app, name="user")
app.add_typer(jobs_app, name="jobs")
app.add_typer(app_app, name="app")
app.command("worker")(worker)
data_app(app)
ops_commands(app)
query_command(app)


@app.command()
def init(
    db: DbOption = None,
    admin_username: Annotated[str, typer.Option(help="Administrator's username.")] = "admin@keel.local",
    admin_password: Annotated[str | None, typer.Option(help="Administrator's password (12+ characters).")] = None,
    admin_email: Annotated[str | None, typer.Option(help="Administrator's email.")] = None,
) -> None:
    """Create the database: system tables, standard objects, the organisation and an administrator."""
    from keel.services.org import init_org

    with friendly_errors():
        ctx = context(db)
        password = admin_password or typer.prompt("Administrator password", hide_input=True,
                                                   confirmation_prompt=True)
        result = init_org(ctx, admin_username=admin_username, admin_password=password, admin_email=admin_email)
        if result.created:
            console.print(f"Initialised {resolve_url(db)}; administrator [bold]{admin_username}[/bold] "
                          f"({result.admin_id}).")
        else:
            console.print(f"{resolve_url(db)} is already initialised; nothing changed.")


@app.command()
def plan(path: Path, db: DbOption = None) -> None:
    """Print the operations a metadata package would apply, and any data they would break."""
    from keel.services.metadata import plan_package

    with friendly_errors():
        p, problems = plan_package(context(db), path)
        if p.empty:
            console.print("No changes.")
        for op in p.ops:
            console.print(op.describe(), markup=False)
        for problem in problems:
            console.print(f"[red]refused[/red]: {problem}")
        if problems:
            raise typer.Exit(1)


@app.command()
def apply(path: Path, db: DbOption = None) -> None:
    """Apply a metadata package in one transaction (nothing is changed if any part fails)."""
    from keel.services.metadata import apply_package

    with friendly_errors():
        p = apply_package(context(db), path)
        for op in p.ops:
            console.print(op.describe(), markup=False)
        console.print(f"Applied {len(p.ops)} operation(s); schema version {p.after.version}." if p.ops
                      else "No changes.")


@app.command()
def describe(obj: Annotated[str | None, typer.Argument(metavar="OBJECT")] = None, db: DbOption = None) -> None:
    """List objects, or the fields of one object."""
    from keel.metadata.types import effective_type

    with friendly_errors():
        schema = context(db).schema()
        if obj is None:
            t = Table("Object", "Label", "Prefix", "Fields", "Sharing")
            for o in schema:
                t.add_row(o.api_name, o.label, o.key_prefix, str(len(o.fields)), o.sharing)
            console.print(t)
            return
        o = schema.get_object(obj)
        t = Table("Field", "Label", "Type", "Required", "Unique", "Details", title=f"{o.api_name} ({o.label})")
        for f in o.fields:
            details = []
            if f.reference_to:
                details.append("→ " + ", ".join(f.reference_to) + f" as {f.relationship_name}")
            if f.values:
                details.append(", ".join(v.value for v in f.values[:6]) + ("…" if len(f.values) > 6 else ""))
            if f.length and f.type in ("text", "textarea", "longtext"):
                details.append(f"length {f.length}")
            if f.formula:
                details.append(f.formula)
            t.add_row(f.api_name, f.label, effective_type(f), "yes" if f.required else "", "yes" if f.unique else "",
                      "; ".join(details))
        console.print(t)


formula_app = typer.Typer(help="Formulas.", no_args_is_help=True)
app.add_typer(formula_app, name="formula")


@formula_app.command("check")
def formula_check(
    text: Annotated[str, typer.Argument(help="The formula.")],
    obj: Annotated[str, typer.Option("--object", help="The object the formula is written on.")],
    db: DbOption = None,
) -> None:
    """Print a formula's type, or the error with its position."""
    from keel.formula import FormulaError, check

    with friendly_errors():
        schema = context(db).schema()
        target = schema.get_object(obj)
        try:
            info = check(text, target, schema, context_kind="validation")
        except FormulaError as e:
            console.print(f"[red]{e.code}[/red]: {e.message}")
            raise typer.Exit(1) from None
        console.print(str(info))


@app.command()
def recalc(target: Annotated[str, typer.Argument(metavar="OBJECT.FIELD", help="A roll-up summary field.")],
           db: DbOption = None) -> None:
    """Recompute a roll-up summary field for every record (repairs values after an outage or a bug)."""
    from keel.formula import recalc_all

    with friendly_errors():
        ctx = context(db)
        obj_name, _, field_name = target.partition(".")
        with ctx.db.transaction() as conn:
            schema = ctx.schema(conn)
            obj = schema.get_object(obj_name)
            f = obj.get_field(field_name)
            if f.type != "rollup":
                console.print(f"[red]INVALID_FIELD[/red]: {obj.api_name}.{f.api_name} is not a roll-up summary field")
                raise typer.Exit(1)
            n = recalc_all(conn, schema, obj, f)
        console.print(f"Recalculated {obj.api_name}.{f.api_name} on {n} record(s).")


@app.command()
def up(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    https_port: Annotated[int, typer.Option(help="HTTPS port (0 turns HTTPS off).")] = 8443,
    admin_password: Annotated[str | None, typer.Option(help="Password for a new administrator.")] = None,
    no_apps: Annotated[bool, typer.Option("--no-apps", help="On first run, skip the apps and sample data.")] = False,
    sample: Annotated[int | None, typer.Option(min=1, help="On first run, each app's sample size (recruiting: "
                                               "applicants; vendors: vendors; philanthropy: pledges) instead of "
                                               "its default; 1 is the smallest.")] = None,
) -> None:
    """Initialise ./keel.db when missing (installing the three apps with sample data and demo users), then serve
    Keel on 127.0.0.1."""
    from keel.cli.asgi import serve
    from keel.services.org import init_org, is_initialised

    with friendly_errors():
        ctx = context(db)
        if not is_initialised(ctx.db):
            password = admin_password or "keel-admin-" + secrets.token_urlsafe(9)
            init_org(ctx, admin_username="admin@keel.local", admin_password=password)
            console.print(f"Created {resolve_url(db)}. Log in as [bold]admin@keel.local[/bold] with password "
                          f"[bold]{password}[/bold]")
            if not no_apps:  # first run: the three apps, their sample data and a demo user per persona
                from keel.cli.apps import first_run_demo, print_demo_logins

                print_demo_logins(first_run_demo(ctx, sample))
        require_current(ctx.db)
        require_search_indexes(ctx.db)
        serve(ctx, host=host, port=port, https_port=https_port)


@app.command("serve")
def serve_cmd(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    https_port: Annotated[int, typer.Option(help="HTTPS port (0 turns HTTPS off).")] = 8443,
    workers: Annotated[int | None, typer.Option(
        help="Server processes on the port (0: one per CPU). Default: the `workers` setting, 1.")] = None,
) -> None:
    """Serve an initialised database, in one process or with a supervisor and several worker processes."""
    from keel.cli.asgi import serve
    from keel.cli.supervisor import resolve_workers, serve_workers

    with friendly_errors():
        ctx = context(db)
        require_current(ctx.db)
        require_search_indexes(ctx.db)
        from keel.api.observability import configure_json_logging

        configure_json_logging()  # production serving: one JSON line per request on stderr
        n = resolve_workers(ctx.settings.workers if workers is None else workers)
        if n > 1:
            serve_workers(ctx, host=host, port=port, https_port=https_port, workers=n)
        else:
            serve(ctx, host=host, port=port, https_port=https_port)


if __name__ == "__main__":  # pragma: no cover
    app()
