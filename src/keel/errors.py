"""The one error tree.

Every failure a person can cause carries a stable ``code`` (Salesforce's codes where one exists, so clients that
branch on them keep working), a message that says what to do, and the fields involved. HTTP statuses are chosen at
the edge (``api/errors.py``), never here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One problem with one record (or with the request when ``index`` is None)."""

    code: str
    message: str
    fields: tuple[str, ...] = ()
    index: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "fields": list(self.fields), "index": self.index}


class KeelError(Exception):
    """Base of every error Keel raises on purpose."""

    code: str = "UNKNOWN_EXCEPTION"

    def __init__(self, message: str, *, code: str | None = None, fields: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields: tuple[str, ...] = tuple(fields)

    def details(self) -> list[ErrorDetail]:
        return [ErrorDetail(self.code, self.message, self.fields)]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFoundError(KeelError):
    code = "NOT_FOUND"


class EntityDeletedError(KeelError):
    code = "ENTITY_IS_DELETED"


class MalformedIdError(KeelError):
    code = "MALFORMED_ID"


class InvalidTypeError(KeelError):
    code = "INVALID_TYPE"


class InvalidFieldError(KeelError):
    code = "INVALID_FIELD"


class MalformedQueryError(KeelError):
    """A SOQL or formula syntax error; ``line`` and ``column`` are 1-based."""

    code = "MALFORMED_QUERY"

    def __init__(self, message: str, *, line: int = 1, column: int = 1, code: str | None = None) -> None:
        super().__init__(f"{message} (line {line}, column {column})", code=code)
        self.line = line
        self.column = column


class AccessDeniedError(KeelError):
    code = "INSUFFICIENT_ACCESS"


class ConflictError(KeelError):
    """An update carried a stale version: someone else saved the record first."""

    code = "CONCURRENT_MODIFICATION"


class MetadataError(KeelError):
    """A metadata package or change is invalid; the message names the file, object and field."""

    code = "INVALID_METADATA"


class AuthenticationError(KeelError):
    code = "INVALID_LOGIN"


class LimitExceededError(KeelError):
    code = "REQUEST_LIMIT_EXCEEDED"


@dataclass(slots=True)
class RowResult:
    """The outcome of one draft in a batch, in input order."""

    index: int
    id: str | None = None
    created: bool = False
    errors: list[ErrorDetail] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.errors


class BatchError(KeelError):
    """An all-or-none batch failed. ``results`` holds every row, with each failing row's own errors.

    Rows that were valid but rolled back because another row failed carry ``ALL_OR_NONE_OPERATION_ROLLED_BACK``,
    as Salesforce reports them.
    """

    code = "BATCH_FAILED"

    def __init__(self, results: Sequence[RowResult]) -> None:
        self.results = list(results)
        first = next((e for r in self.results for e in r.errors if e.code != ROLLED_BACK), None)
        message = first.message if first else "The batch was rolled back."
        super().__init__(message, code=first.code if first else ROLLED_BACK, fields=first.fields if first else ())

    def details(self) -> list[ErrorDetail]:
        return [e for r in self.results for e in r.errors if e.code != ROLLED_BACK]


ROLLED_BACK = "ALL_OR_NONE_OPERATION_ROLLED_BACK"
