"""Tokenizer and Pratt parser for Salesforce's formula syntax.

Precedence, loosest first: ``||``, ``&&``, comparisons, ``+ - &``, ``* /``, unary ``- + !``, ``^`` (right
associative, so ``-2^2`` is -4 and ``2^-1`` is 0.5). Keywords and function names are case-insensitive, as in
Salesforce. Every node keeps its offset so errors can say where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from keel.formula.ast import Binary, Call, Literal, Node, Ref, Unary
from keel.formula.errors import error_at

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|/\*.*?\*/)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+))
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>\$?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<>|<=|>=|[-+*/^&=<>(),.!])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "b": "\b", "f": "\f"}
_COMPARE = frozenset({"=", "==", "!=", "<>", "<", "<=", ">", ">="})
MAX_DEPTH = 64
MAX_LENGTH = 8000  # Salesforce allows 3,900 characters; leave room, refuse abuse
MAX_TREE_DEPTH = 256


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # num | str | ident | op | eof
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            if text.startswith("/*", pos):
                raise error_at(text, pos, "Unterminated comment")
            if text[pos] in "\"'":
                raise error_at(text, pos, "Unterminated string literal")
            raise error_at(text, pos, f"Unexpected character {text[pos]!r}")
        kind = m.lastgroup or "ws"
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    out.append(Token("eof", "", n))
    return out


def _unescape(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.DOTALL)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def expect(self, op: str) -> Token:
        t = self.tok
        if t.kind != "op" or t.text != op:
            found = "end of formula" if t.kind == "eof" else repr(t.text)
            raise error_at(self.text, t.pos, f"Expected {op!r} but found {found}")
        return self.advance()

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def parse(self) -> Node:
        if self.tok.kind == "eof":
            raise error_at(self.text, 0, "The formula is empty")
        node = self.expr()
        if self.tok.kind != "eof":
            raise error_at(self.text, self.tok.pos, f"Unexpected {self.tok.text!r} after the end of the expression")
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise error_at(self.text, self.tok.pos, "The formula is nested too deeply")
        try:
            return self.or_()
        finally:
            self.depth -= 1

    def or_(self) -> Node:
        node = self.and_()
        while self.at_op("||"):
            t = self.advance()
            node = Binary(t.pos, "||", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.compare()
        while self.at_op("&&"):
            t = self.advance()
            node = Binary(t.pos, "&&", node, self.compare())
        return node

    def compare(self) -> Node:
        node = self.additive()
        while self.tok.kind == "op" and self.tok.text in _COMPARE:
            t = self.advance()
            op = {"==": "=", "<>": "!="}.get(t.text, t.text)
            node = Binary(t.pos, op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.at_op("+", "-", "&"):
            t = self.advance()
            node = Binary(t.pos, t.text, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.at_op("*", "/"):
            t = self.advance()
            node = Binary(t.pos, t.text, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at_op("-", "+", "!"):
            t = self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise error_at(self.text, t.pos, "The formula is nested too deeply")
            try:
                return Unary(t.pos, t.text, self.unary())
            finally:
                self.depth -= 1
        return self.power()

    def power(self) -> Node:
        node = self.primary()
        if self.at_op("^"):
            t = self.advance()
            node = Binary(t.pos, "^", node, self.unary())
        return node

    def primary(self) -> Node:
        t = self.tok
        if t.kind == "num":
            self.advance()
            return Literal(t.pos, Decimal(t.text))
        if t.kind == "str":
            self.advance()
            return Literal(t.pos, _unescape(t.text))
        if t.kind == "op" and t.text == "(":
            self.advance()
            node = self.expr()
            self.expect(")")
            return node
        if t.kind == "ident":
            self.advance()
            upper = t.text.upper()
            if self.at_op("("):
                return self.call(t, upper)
            if upper in ("TRUE", "FALSE"):
                return Literal(t.pos, upper == "TRUE")
            if upper == "NULL":
                return Literal(t.pos, None)
            parts = [t.text]
            while self.at_op("."):
                self.advance()
                nxt = self.tok
                if nxt.kind != "ident" or nxt.text.startswith("$"):
                    raise error_at(self.text, nxt.pos, "Expected a field name after '.'")
                parts.append(self.advance().text)
            return Ref(t.pos, tuple(parts))
        found = "end of formula" if t.kind == "eof" else repr(t.text)
        raise error_at(self.text, t.pos, f"Expected a value but found {found}")

    def call(self, name: Token, upper: str) -> Node:
        if name.text.startswith("$"):
            raise error_at(self.text, name.pos, f"{name.text} is not a function")
        self.expect("(")
        args: list[Node] = []
        if not self.at_op(")"):
            args.append(self.expr())
            while self.at_op(","):
                self.advance()
                args.append(self.expr())
        self.expect(")")
        return Call(name.pos, upper, tuple(args))


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse formula text into a tree; raises ``FormulaError`` with line and column. Cached: trees are immutable."""
    if len(text) > MAX_LENGTH:
        raise error_at(text, MAX_LENGTH, f"The formula is longer than {MAX_LENGTH} characters")
    node = _Parser(text).parse()
    _check_depth(text, node)
    return node


def _children(n: Node) -> tuple[Node, ...]:
    if isinstance(n, Binary):
        return (n.left, n.right)
    if isinstance(n, Unary):
        return (n.operand,)
    if isinstance(n, Call):
        return n.args
    return ()


def _check_depth(text: str, root: Node) -> None:
    """Long operator chains (1+1+…+1) make deep trees without deep parsing; the compilers recurse, so refuse them
    here, iteratively, with a position."""
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        n, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise error_at(text, n.pos, "The formula is nested too deeply")
        stack.extend((c, depth + 1) for c in _children(n))
