"""The formula syntax tree: frozen nodes carrying their character offset, so every later error can point at the
exact place in the administrator's text. The type checker turns this tree into a typed one (``typed.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A number (``Decimal``), a string, TRUE/FALSE or NULL (``value`` None)."""

    value: Decimal | str | bool | None


@dataclass(frozen=True, slots=True)
class Ref(Node):
    """A field, a parent path (``Account.Owner.Name``) or a global (``$User.Email``), as written."""

    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "-", "+" or "!"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str  # upper case
    args: tuple[Node, ...]
