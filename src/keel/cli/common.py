"""Shared CLI plumbing: the --db option, opening a context, and turning KeelErrors into clean exits."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.services.org import open_context
from keel.settings import Settings

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL. Defaults to KEEL_DATABASE_URL, then sqlite:///keel.db."),
]


def resolve_url(db: str | None) -> str:
    return db or os.environ.get("KEEL_DATABASE_URL") or Settings.load().database_url


def context(db: str | None) -> Context:
    url = resolve_url(db)
    return open_context(url, settings=Settings.load().with_overrides(database_url=url))


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Print a KeelError as ``CODE: message`` and exit 1, instead of a traceback."""
    try:
        yield
    except BatchError as e:
        for d in e.details()[:20]:
            row = f"row {d.index + 1}: " if d.index is not None else ""
            err_console.print(f"[red]{d.code}[/red]: {row}{d.message}")
        sys.exit(1)
    except KeelError as e:
        err_console.print(f"[red]{e.code}[/red]: {e.message}")
        sys.exit(1)


def run(fn: Callable[[], T]) -> T:
    with friendly_errors():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover
