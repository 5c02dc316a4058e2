"""The explicit context every use case receives: who is acting, on which database, at what time.

Nothing in Keel reads a global user or a global connection; tests build a Context and pass it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.store import SnapshotCache
from keel.settings import Settings
from keel.storage.engine import Database

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, FromClause
    from sqlalchemy.engine import Connection


def utcnow() -> datetime:
    """Naive UTC, the form datetimes are stored in."""
    return datetime.now(UTC).replace(tzinfo=None)


class Access(Protocol):
    """What the acting user may do. ``security/`` implements it; the lifecycle and query paths consult it."""

    def can(self, obj: str, action: str) -> bool: ...  # action: read | create | edit | delete | view_all | modify_all

    def field_readable(self, obj: str, field: str) -> bool: ...

    def field_editable(self, obj: str, field: str) -> bool: ...

    def record_filter(self, obj: ObjectDef, table: FromClause, mode: str) -> ColumnElement[bool] | None:
        """The visibility predicate for ``mode`` (read | edit | delete) on ``table``; None means every row."""
        ...


class FullAccess:
    """The access of administrators and of the explicit system actor."""

    def can(self, obj: str, action: str) -> bool:
        return True

    def field_readable(self, obj: str, field: str) -> bool:
        return True

    def field_editable(self, obj: str, field: str) -> bool:
        return True

    def record_filter(self, obj: ObjectDef, table: FromClause, mode: str) -> ColumnElement[bool] | None:
        return None


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: int
    username: str
    time_zone: str = "UTC"
    locale: str = "en_US"
    is_system: bool = False
    access: Access = field(default_factory=FullAccess)
    profile: str = "System Administrator"
    role_id: int | None = None
    session_id: str | None = None


SYSTEM_ACTOR = Actor(user_id=1, username="system", is_system=True)


@dataclass(frozen=True)
class Context:
    db: Database
    actor: Actor
    settings: Settings = field(default_factory=Settings)
    metadata: SnapshotCache = field(default_factory=SnapshotCache)
    clock: Callable[[], datetime] = utcnow
    hooks: Any = None  # records.hooks.LifecycleHooks, wired by services
    depth: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def schema(self, conn: Connection | None = None) -> SchemaSnapshot:
        if conn is not None:
            return self.metadata.get(conn)
        snap = self.metadata.peek()
        if snap is not None:
            return snap
        with self.db.read() as c:
            return self.metadata.get(c)

    def as_actor(self, actor: Actor) -> Context:
        return replace(self, actor=actor)

    def nested(self) -> Context:
        return replace(self, depth=self.depth + 1)
