"""The hook protocol the lifecycle calls. ``automation/`` implements it and ``services/`` wires it into the
Context, so ``records/`` never imports automation (flows save records too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from keel.metadata.model import ObjectDef

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from keel.context import Context


@dataclass(slots=True)
class RowState:
    """One record moving through a save: its values by API name, and what it was before (updates)."""

    index: int
    values: dict[str, Any]
    prior: dict[str, Any] | None = None
    pk: int | None = None
    changed: set[str] = field(default_factory=set)

    @property
    def is_new(self) -> bool:
        return self.prior is None


class LifecycleHooks(Protocol):
    def before_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def after_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def before_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def after_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def after_undelete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...


class RowError(Exception):
    """Raised by a hook to fail one row with a code and message (e.g. a flow's validation)."""

    def __init__(self, index: int, code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.index, self.code, self.message, self.fields = index, code, message, tuple(fields)
