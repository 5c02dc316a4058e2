"""``keel app``: list, plan and install (or upgrade) the bundled apps, and ``keel up``'s first-run demo."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from keel.cli.common import DbOption, console, context, friendly_errors
from keel.context import Context

app_app = typer.Typer(help="The bundled apps: Recruiting, Vendor Management, Philanthropy.", no_args_is_help=True)

DEMO_PASSWORD = "keel-demo-passphrase"


@app_app.command("list")
def list_cmd(db: DbOption = None) -> None:
    """The bundled apps and the version installed in this database."""
    from keel.services.apps import list_apps

    with friendly_errors():
        t = Table("App", "Label", "Version", "Installed")
        for a in list_apps(context(db)):
            t.add_row(a["name"], a["label"], a["version"], a["installed"] or "-")
        console.print(t)


@app_app.command("plan")
def plan_cmd(name: Annotated[str, typer.Argument(help="An app's name, or a directory holding a copy of one.")],
             db: DbOption = None) -> None:
    """Print what installing or upgrading the app would change, and any data it would break."""
    from keel.services.apps import plan_app

    with friendly_errors():
        ap = plan_app(context(db), name)
        console.print(f"{name}: installed {ap.installed_version or 'no'}, package version {ap.version}")
        if ap.plan.empty:
            console.print("No schema changes.")
        for line in ap.describe():
            console.print(line, markup=False)
        for problem in ap.problems:
            console.print(f"[red]refused[/red]: {problem}")
        if ap.problems:
            raise typer.Exit(1)


@app_app.command("install")
def install_cmd(
    name: Annotated[str, typer.Argument(help="An app's name, or a directory holding a copy of one.")],
    db: DbOption = None,
    sample: Annotated[int | None, typer.Option(help="Also make sample data of this size (recruiting: applicants; "
                                                     "vendors: vendors; philanthropy: pledges).")] = None,
) -> None:
    """Install or upgrade an app: the plan is shown, then applied in one transaction."""
    from keel.services.apps import install_app, plan_app

    with friendly_errors():
        ctx = context(db)
        for line in plan_app(ctx, name).describe():
            console.print(line, markup=False)
        result = install_app(ctx, name, sample)
        ops = len(result.app.plan.ops)
        console.print(f"Installed {name} version {result.app.version} ({ops} schema operation(s)).")
        for obj, n in result.sample.items():
            console.print(f"  sample {obj}: {n}")


@app_app.command("report")
def report_cmd(
    name: str,
    report: Annotated[str | None, typer.Argument(help="The report's name; omit to list the app's reports.")] = None,
    db: DbOption = None,
) -> None:
    """Run one of an app's reports (as the administrator) and print it as a table."""
    from keel.services.apps import app_reports, run_app_report_totals

    with friendly_errors():
        if report is None:
            t = Table("Report", "Label")
            for r in app_reports(name):
                t.add_row(r.name, r.label)
            console.print(t)
            return
        found, rows, total = run_app_report_totals(context(db), name, report)
        t = Table(*(rows[0].keys() if rows else ["(no rows)"]), title=found.label)
        for row in rows:
            t.add_row(*(_cell(v) for v in row.values()))
        if total and rows:  # the summary formulas over every row: the grand total line
            t.add_row(*(_cell(total[k]) if k in total else ("Total" if i == 0 else "") for i, k in enumerate(rows[0])))
        console.print(t)


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return " / ".join(_cell(v) for k, v in value.items() if k != "attributes")
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


def first_run_demo(ctx: Context, sample: int | None = None) -> list[tuple[str, str, str]]:
    """Install the three apps with sample data (each app's default size, or ``sample``) and create one demo user
    per persona; returns (persona, username, password) rows to print."""
    from keel.apps.demo import create_demo_users
    from keel.services.apps import install_all

    install_all(ctx, sample=False)
    users = create_demo_users(ctx, DEMO_PASSWORD)
    install_all(ctx, sample=True, size=sample)
    return users


def print_demo_logins(rows: list[tuple[str, str, str]]) -> None:
    # usernames and passwords are never wrapped or cut, however narrow the terminal: they are typed in to log in
    t = Table("Persona", Column("Username", no_wrap=True), Column("Password", no_wrap=True),
              title="Demo users (sample data installed)")
    for persona, user, password in rows:
        t.add_row(persona, user, password)
    console.print(t)
