"""Query cursors for queryMore, persisted in ``keel_query_cursor`` so a locator works across requests and processes.

A cursor stores the SOQL text, the options it ran with (including the frozen ``now`` so date literals do not move
between pages), the total size computed on the first page, and the keyset position at each page boundary it has
handed out. Nothing about the rows themselves is stored: the next page is a fresh keyset query, never an OFFSET scan.
Cursors expire after an idle time; an unknown or expired locator is ``INVALID_QUERY_LOCATOR``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import KeelError

metadata = sa.MetaData()
cursor_table = sa.Table(
    "keel_query_cursor",
    metadata,
    sa.Column("id", sa.String(18), primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False, index=True),
)
DEFAULT_IDLE = dt.timedelta(minutes=15)
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def create_cursor_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_cursor_id() -> str:
    """``01g`` + 15 random base-62 characters: 18 characters, no ``-`` (django splits locators on it)."""
    return "01g" + "".join(secrets.choice(_ALPHABET) for _ in range(15))


def invalid_locator(locator: str) -> KeelError:
    return KeelError(f"invalid query locator: {locator}", code="INVALID_QUERY_LOCATOR")


def parse_locator(locator: str) -> tuple[str, int]:
    cid, sep, off = locator.rpartition("-")
    if not sep or not cid.startswith("01g") or "-" in cid or not off.isdigit():
        raise invalid_locator(locator)
    return cid, int(off)


def _raw(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Cursor bookkeeping runs on every page, so it uses the DBAPI cursor with fixed SQL (placeholders only)."""
    if conn.dialect.name != "sqlite":
        sql = sql.replace("?", "%s")
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def _ts(conn: Connection, v: dt.datetime) -> Any:
    return f"{v:%Y-%m-%d %H:%M:%S}.{v.microsecond:06d}" if conn.dialect.name == "sqlite" else v


def save(conn: Connection, cursor_id: str, state: dict[str, Any], idle: dt.timedelta = DEFAULT_IDLE,
         *, new: bool = False) -> None:
    body = json.dumps(state, separators=(",", ":"))
    now = _utcnow()
    if new:
        _raw(conn, "DELETE FROM keel_query_cursor WHERE expires_at < ?", (_ts(conn, now),))
        _raw(conn, "INSERT INTO keel_query_cursor (id, state, expires_at) VALUES (?, ?, ?)",
             (cursor_id, body, _ts(conn, now + idle)))
    else:
        _raw(conn, "UPDATE keel_query_cursor SET state = ?, expires_at = ? WHERE id = ?",
             (body, _ts(conn, now + idle), cursor_id))


def load(conn: Connection, locator: str) -> tuple[str, int, dict[str, Any]]:
    cid, off = parse_locator(locator)
    rows = _raw(conn, "SELECT state, expires_at FROM keel_query_cursor WHERE id = ?", (cid,))
    if not rows:
        raise invalid_locator(locator)
    body, expires = rows[0]
    if isinstance(expires, str):
        expires = dt.datetime.fromisoformat(expires)
    if expires < _utcnow():
        raise invalid_locator(locator)
    state: dict[str, Any] = json.loads(body)
    return cid, off, state


def encode_value(v: Any) -> Any:
    """JSON form of a keyset value, tagged so it decodes to the same Python type."""
    if isinstance(v, dt.datetime):
        return {"dt": v.isoformat()}
    if isinstance(v, dt.date):
        return {"d": v.isoformat()}
    if isinstance(v, dt.time):
        return {"t": v.isoformat()}
    if isinstance(v, Decimal):
        return {"dec": str(v)}
    return v


def decode_value(v: Any) -> Any:
    if isinstance(v, dict):
        if "dt" in v:
            return dt.datetime.fromisoformat(v["dt"])
        if "d" in v:
            return dt.date.fromisoformat(v["d"])
        if "t" in v:
            return dt.time.fromisoformat(v["t"])
        if "dec" in v:
            return Decimal(v["dec"])
    return v
