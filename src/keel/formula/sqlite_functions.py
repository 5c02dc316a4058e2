"""SQLite user-defined functions the SQL back end relies on (SQLite has no REGEXP and formats numbers its own way).

``register(dbapi_conn)`` must run on every SQLite connection, from the engine's connect hook.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from keel.formula.lib.phone import phone_key
from keel.formula.lib.text import number_text, regex_match


def _regex(s: Any, pattern: Any) -> int | None:
    if s is None or pattern is None:
        return None
    return 1 if regex_match(str(s), str(pattern)) else 0


def _num_text(x: Any) -> str | None:
    if x is None:
        return None
    d = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    return number_text(d)


def _phone_key(s: Any, country: Any) -> str | None:
    return None if s is None or country is None else phone_key(str(s), str(country))


def register(dbapi_conn: Any) -> None:
    """Add keel_regex(text, pattern), keel_num_text(number) and keel_phone_key(text, country) to a sqlite3
    connection."""
    dbapi_conn.create_function("keel_regex", 2, _regex, deterministic=True)
    dbapi_conn.create_function("keel_num_text", 1, _num_text, deterministic=True)
    dbapi_conn.create_function("keel_phone_key", 2, _phone_key, deterministic=True)
