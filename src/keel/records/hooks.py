"""The hook protocol the lifecycle calls. ``automation/`` implements it and ``services/`` wires it into the
Context, so ``records/`` never imports automation (flows save records too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from keel.errors import ErrorDetail
from keel.metadata.model import ObjectDef

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from keel.context import Context

T = TypeVar("T")


@dataclass(slots=True)
class RowState:
    """One record moving through a save: its values by API name, and what it was before (updates)."""

    index: int
    values: dict[str, Any]
    prior: dict[str, Any] | None = None
    pk: int | None = None
    changed: set[str] = field(default_factory=set)
    public_id: str | None = None  # the 18-character id, once something has encoded it (a flow, the result)

    @property
    def is_new(self) -> bool:
        return self.prior is None


class LifecycleHooks(Protocol):
    def before_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def after_save(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def before_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def after_delete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...

    def after_undelete(self, ctx: Context, conn: Connection, obj: ObjectDef, rows: Sequence[RowState]) -> None: ...


def find_hook(hooks: object, kind: type[T]) -> T | None:
    """The hook of type ``kind`` in a chain of wrappers (each wrapper keeps the next in ``.inner``).

    Hooks compose by wrapping (security, automation, metrics), so code that needs one of them walks the chain
    instead of assuming an order."""
    seen = 0
    while hooks is not None and seen < 16:
        if isinstance(hooks, kind):
            return hooks
        hooks = getattr(hooks, "inner", None)
        seen += 1
    return None


class RowError(Exception):
    """Raised by a hook to fail one row with a code and message (e.g. a flow's validation)."""

    def __init__(self, index: int, code: str, message: str, fields: Sequence[str] = (),
                 cause: ErrorDetail | None = None) -> None:
        super().__init__(message)
        self.index, self.code, self.message, self.fields = index, code, message, tuple(fields)
        self.cause = cause  # the error of the write an automation action made, when that is what failed
