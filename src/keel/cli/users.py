"""``keel user create/list/deactivate``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from keel.cli.common import DbOption, console, context, friendly_errors

user_app = typer.Typer(help="Manage users.", no_args_is_help=True)


@user_app.command("create")
def create(
    username: Annotated[str, typer.Option(help="Login name, usually an email address.")],
    password: Annotated[str | None, typer.Option(help="Password (12+ characters); prompted when omitted.")] = None,
    last_name: Annotated[str | None, typer.Option(help="Last name (defaults to the username).")] = None,
    first_name: Annotated[str | None, typer.Option(help="First name.")] = None,
    email: Annotated[str | None, typer.Option(help="Email (defaults to the username).")] = None,
    profile: Annotated[str, typer.Option(help="Profile name.")] = "Standard User",
    role: Annotated[str | None, typer.Option(help="Role name.")] = None,
    db: DbOption = None,
) -> None:
    """Create a user."""
    from keel.services.users import create_user

    with friendly_errors():
        pw = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        uid = create_user(context(db), username=username, password=pw, last_name=last_name or username.split("@")[0],
                          first_name=first_name, email=email or (username if "@" in username else
                                                                 f"{username}@keel.local"),
                          profile=profile, role=role)
        console.print(f"Created user {username} ({uid}).")


@user_app.command("list")
def list_(db: DbOption = None) -> None:
    """List users."""
    from keel.services.users import list_users

    with friendly_errors():
        t = Table("Id", "Username", "Name", "Email", "Active")
        for u in list_users(context(db)):
            t.add_row(str(u["Id"]), str(u["Username"]), str(u["Name"] or ""), str(u["Email"] or ""),
                      "yes" if u["IsActive"] else "no")
        console.print(t)


@user_app.command("deactivate")
def deactivate(username: str, db: DbOption = None) -> None:
    """Deactivate a user; their sessions and tokens stop working at once."""
    from keel.services.users import deactivate_user

    with friendly_errors():
        uid = deactivate_user(context(db), username)
        console.print(f"Deactivated {username} ({uid}).")
