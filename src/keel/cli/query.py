"""``keel query``: SOQL from the command line, run as a named user through the same service as the REST API."""

from __future__ import annotations

import enum
import sys
from typing import Annotated

import orjson
import typer
from rich.table import Table
from rich.text import Text

from keel.cli.common import DbOption, console, context, err_console
from keel.context import Context
from keel.errors import KeelError


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def acting_context(ctx: Context, username: str | None) -> Context:
    """``ctx`` as the named user, or as the organisation's administrator when none is named. Never the system
    actor: a CLI read must obey sharing and field-level security like any other."""
    from keel.services.security import user_context
    from keel.services.users import administrator_id, find_user_id

    return user_context(ctx, find_user_id(ctx, username) if username else administrator_id(ctx))


def _print_error(soql: str, e: KeelError) -> None:
    """``CODE: message``, then the offending line of the query with a caret under the column, when known."""
    err_console.print(f"[red]{e.code}[/red]: {e.message}", highlight=False)
    line, column = getattr(e, "line", None), getattr(e, "column", None)
    lines = soql.splitlines()
    if isinstance(line, int) and isinstance(column, int) and 1 <= line <= len(lines):
        err_console.print(Text(f"  {lines[line - 1]}\n  {' ' * (column - 1)}^"))


def _table(header: list[str], rows: list[list[object]], response: dict[str, object]) -> None:
    t = Table(*header, show_lines=False)
    for row in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in row))
    console.print(t)
    shown, total = len(rows), response["totalSize"]
    more = "" if response["done"] else " (more not fetched)"
    if header != ["totalSize"]:
        console.print(f"{shown} of {total} record(s){more}.", highlight=False)


def query_command(app: typer.Typer) -> None:
    @app.command("query")
    def query_(
        soql: Annotated[str, typer.Argument(metavar="SOQL", help="The query, e.g. \"SELECT Name FROM Account\".")],
        all_rows: Annotated[bool, typer.Option("--all", help="queryAll: include deleted records.")] = False,
        fmt: Annotated[Format, typer.Option("--format", help="Output: a table, REST-shaped JSON, or CSV.")]
        = Format.table,
        as_user: Annotated[str | None, typer.Option("--as", metavar="USERNAME",
                                                    help="Run as this user (default: the administrator).")] = None,
        limit: Annotated[int | None, typer.Option(min=0, help="Stop after this many records (default: all).")]
        = None,
        db: DbOption = None,
    ) -> None:
        """Run SOQL as a user (sharing and field-level security apply), following queryMore to the end."""
        from keel.services.query_results import collect, tabulate, to_csv

        try:
            ctx = acting_context(context(db), as_user)
            response = collect(ctx, soql, query_all=all_rows, limit=limit)
        except KeelError as e:
            _print_error(soql, e)
            raise typer.Exit(1) from None
        if fmt is Format.json:
            sys.stdout.write(orjson.dumps(response, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif fmt is Format.csv:
            sys.stdout.write(to_csv(soql, response))
        else:
            header, rows = tabulate(soql, response)
            _table(header, rows, response)
