"""The formula error: a ``MalformedQueryError`` with code ``INVALID_FORMULA``, so the API layer maps it like a SOQL
syntax error, while callers that care can catch formula problems alone and read the expected and actual types."""

from __future__ import annotations

from keel.errors import MalformedQueryError


class FormulaError(MalformedQueryError):
    """A formula that does not parse or does not type-check; ``line`` and ``column`` are 1-based."""

    code = "INVALID_FORMULA"

    def __init__(self, message: str, *, line: int = 1, column: int = 1, expected: str | None = None,
                 actual: str | None = None) -> None:
        super().__init__(message, line=line, column=column, code="INVALID_FORMULA")
        self.reason = message
        self.expected = expected
        self.actual = actual


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset, for error messages people can act on."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    return line, offset - start + 1


def error_at(text: str, offset: int, message: str, *, expected: str | None = None,
             actual: str | None = None) -> FormulaError:
    line, column = position(text, offset)
    return FormulaError(message, line=line, column=column, expected=expected, actual=actual)
