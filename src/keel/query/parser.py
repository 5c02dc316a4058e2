"""Recursive-descent SOQL parser producing ``keel.query.ast`` trees.

Operators are table-driven (``COMPARISON_OPS``, ``LOGICAL``) so the grammar reads like the reference grammar in
salesforce-api.md §5. Two SOQL rules that differ from SQL are enforced here, at parse time, because they are syntax:
AND and OR cannot be mixed at one level without parentheses, and NOT applies to a single term.
"""

from __future__ import annotations

import re

from keel.errors import MalformedQueryError
from keel.query import ast as A
from keel.query.tokens import DATE, DATETIME, EOF, IDENT, NUMBER, OP, STRING, Token, tokenize

# Comparison operators: token sequence (upper-cased) -> canonical operator name.
COMPARISON_OPS: dict[tuple[str, ...], str] = {
    ("=",): "=",
    ("!=",): "!=",
    ("<>",): "!=",
    ("<",): "<",
    ("<=",): "<=",
    (">",): ">",
    (">=",): ">=",
    ("LIKE",): "LIKE",
    ("IN",): "IN",
    ("NOT", "IN"): "NOT IN",
    ("INCLUDES",): "INCLUDES",
    ("EXCLUDES",): "EXCLUDES",
}
_SINGLE_OPS = {seq[0]: name for seq, name in COMPARISON_OPS.items() if len(seq) == 1}
_PAIR_OPS = {(seq[0], seq[1]): name for seq, name in COMPARISON_OPS.items() if len(seq) == 2}
# Logical operators: keyword -> node type. Both bind equally; mixing them at one level is an error.
LOGICAL: dict[str, type[A.And] | type[A.Or]] = {"AND": A.And, "OR": A.Or}

# Words that end a FROM clause or a select item, so they cannot be taken as an alias.
CLAUSE_WORDS = frozenset(
    {"FROM", "WHERE", "WITH", "GROUP", "HAVING", "ORDER", "LIMIT", "OFFSET", "FOR", "UPDATE", "USING", "AND", "OR",
     "NOT", "ASC", "DESC", "NULLS", "SELECT", "TYPEOF", "WHEN", "THEN", "ELSE", "END", "IN", "LIKE", "INCLUDES",
     "EXCLUDES", "NULL", "TRUE", "FALSE"}
)
FIXED_DATE_LITERALS = frozenset(
    {"YESTERDAY", "TODAY", "TOMORROW", "LAST_WEEK", "THIS_WEEK", "NEXT_WEEK", "LAST_MONTH", "THIS_MONTH",
     "NEXT_MONTH", "LAST_90_DAYS", "NEXT_90_DAYS", "THIS_QUARTER", "LAST_QUARTER", "NEXT_QUARTER", "THIS_YEAR",
     "LAST_YEAR", "NEXT_YEAR", "THIS_FISCAL_QUARTER", "LAST_FISCAL_QUARTER", "NEXT_FISCAL_QUARTER",
     "THIS_FISCAL_YEAR", "LAST_FISCAL_YEAR", "NEXT_FISCAL_YEAR"}
)
_UNITS = ("DAYS", "WEEKS", "MONTHS", "QUARTERS", "YEARS", "FISCAL_QUARTERS", "FISCAL_YEARS")
N_DATE_LITERALS = frozenset(
    [f"LAST_N_{u}" for u in _UNITS] + [f"NEXT_N_{u}" for u in _UNITS] + [f"N_{u}_AGO" for u in _UNITS]
)
_CURRENCY = re.compile(r"^([A-Za-z]{3})(\d+(?:\.\d+)?)$")
_SPECIAL_ITEMS = frozenset({"TYPEOF", "FIELDS"})
WITH_WORDS = frozenset({"SECURITY_ENFORCED", "USER_MODE", "SYSTEM_MODE"})


def parse(text: str) -> A.Query:
    """Parse one SOQL statement; raise ``MalformedQueryError`` with line and column on any syntax error."""
    p = _Parser(tokenize(text))
    q = p.query()
    if p.tok.kind != EOF:
        p.fail(f"unexpected token: {p.tok.text}")
    return q


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.i = 0
        self.last = len(tokens) - 1
        self.tok = tokens[0]  # the current token, kept as an attribute: it is read on every step

    # --- token helpers ----------------------------------------------------------------------------------------

    def peek(self, k: int = 1) -> Token:
        j = self.i + k
        return self.toks[j if j < self.last else self.last]

    def advance(self) -> Token:
        t = self.tok
        if self.i < self.last:
            self.i += 1
            self.tok = self.toks[self.i]
        return t

    def fail(self, message: str, tok: Token | None = None) -> None:
        t = tok or self.tok
        if t.kind == EOF and message.startswith("unexpected token"):
            message = "unexpected end of query"
        raise MalformedQueryError(message, line=t.line, column=t.column)

    def is_kw(self, word: str, k: int = 0) -> bool:
        t = self.peek(k) if k else self.tok
        return t.upper == word and t.kind == IDENT

    def accept_kw(self, word: str) -> bool:
        if self.is_kw(word):
            self.advance()
            return True
        return False

    def expect_kw(self, word: str) -> Token:
        if not self.is_kw(word):
            self.fail(f"unexpected token: {self.tok.text or 'end of query'}, expecting {word}")
        return self.advance()

    def is_op(self, op: str) -> bool:
        t = self.tok
        return t.text == op and t.kind == OP

    def expect_op(self, op: str) -> Token:
        if not self.is_op(op):
            self.fail(f"unexpected token: {self.tok.text or 'end of query'}, expecting '{op}'")
        return self.advance()

    def ident(self) -> Token:
        if self.tok.kind != IDENT:
            self.fail(f"unexpected token: {self.tok.text or 'end of query'}, expecting an identifier")
        return self.advance()

    @staticmethod
    def pos(t: Token) -> A.Pos:
        return (t.line, t.column)

    # --- query ------------------------------------------------------------------------------------------------

    def query(self, *, nested: bool = False) -> A.Query:
        start = self.expect_kw("SELECT")
        items = [self.select_item(nested)]
        while self.is_op(","):
            self.advance()
            items.append(self.select_item(nested))
        self.expect_kw("FROM")
        from_tok = self.ident()
        from_name = from_tok.text
        while self.is_op(".") and self.peek().kind == IDENT:  # child relationship paths are single names,
            self.advance()  # but tolerate ns-qualified names by joining them
            from_name += "." + self.advance().text
        alias = None
        if self.tok.kind == IDENT and self.tok.upper not in CLAUSE_WORDS:
            alias = self.advance().text
        scope = None
        if self.is_kw("USING"):
            self.advance()
            self.expect_kw("SCOPE")
            scope = self.ident().text
        where = None
        if self.accept_kw("WHERE"):
            where = self.condition()
        with_ = None
        if self.is_kw("WITH"):
            self.advance()
            w = self.ident()
            if w.upper == "DATA":
                self.fail("WITH DATA CATEGORY is not supported", w)
            if w.upper not in WITH_WORDS:
                self.fail(f"unexpected token: {w.text}", w)
            with_ = w.upper
        group_by: list[A.Expr] = []
        group_kind = None
        having = None
        if self.is_kw("GROUP"):
            self.advance()
            self.expect_kw("BY")
            if (self.is_kw("ROLLUP") or self.is_kw("CUBE")) and self.peek().kind == OP and self.peek().text == "(":
                group_kind = self.advance().upper
                self.expect_op("(")
                group_by = self.expr_list()
                self.expect_op(")")
            else:
                group_by = self.expr_list()
            if self.accept_kw("HAVING"):
                having = self.condition()
        order: list[A.OrderItem] = []
        if self.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            order.append(self.order_item())
            while self.is_op(","):
                self.advance()
                order.append(self.order_item())
        limit = offset = None
        if self.accept_kw("LIMIT"):
            limit = self.integer()
        if self.accept_kw("OFFSET"):
            offset = self.integer()
        for_: list[str] = []
        update = None
        if not nested:
            while self.is_kw("FOR"):
                self.advance()
                w = self.ident()
                if w.upper not in ("VIEW", "REFERENCE", "UPDATE"):
                    self.fail(f"unexpected token: {w.text}", w)
                for_.append(w.upper)
            if self.is_kw("UPDATE"):
                self.advance()
                w = self.ident()
                if w.upper not in ("TRACKING", "VIEWSTAT"):
                    self.fail(f"unexpected token: {w.text}", w)
                update = w.upper
        return A.Query(tuple(items), from_name, alias, scope, where, with_, tuple(group_by), group_kind, having,
                       tuple(order), limit, offset, tuple(for_), update, self.pos(start), self.pos(from_tok))

    def integer(self) -> int:
        t = self.tok
        if t.kind != NUMBER or not t.text.isdigit():
            self.fail(f"unexpected token: {t.text or 'end of query'}, expecting a non-negative integer")
        self.advance()
        return int(t.text)

    def expr_list(self) -> list[A.Expr]:
        out = [self.expr()]
        while self.is_op(","):
            self.advance()
            if self.tok.kind == NUMBER:
                break
            out.append(self.expr())
        return out

    def order_item(self) -> A.OrderItem:
        t = self.tok
        e = self.expr()
        desc, explicit = False, False
        if self.is_kw("ASC") or self.is_kw("DESC"):
            desc = self.advance().upper == "DESC"
            explicit = True
        nulls = None
        if self.accept_kw("NULLS"):
            w = self.ident()
            if w.upper not in ("FIRST", "LAST"):
                self.fail(f"unexpected token: {w.text}, expecting FIRST or LAST", w)
            nulls = w.upper
        return A.OrderItem(e, desc, nulls, explicit, self.pos(t))

    # --- select list ------------------------------------------------------------------------------------------

    def select_item(self, nested: bool) -> A.SelectItem:
        t = self.tok
        if t.kind == IDENT and t.upper not in _SPECIAL_ITEMS:  # the common case: a field or a function call
            nxt = self.toks[self.i + 1]
            e = self.expr() if nxt.kind == OP and nxt.text == "(" else self.field_ref()
            alias = None
            if self.tok.kind == IDENT and self.tok.upper not in CLAUSE_WORDS:
                alias = self.advance().text
            return A.SelectExpr(e, alias, (t.line, t.column))
        if self.is_op("("):
            if nested:
                self.fail("nested subqueries are only allowed one level deep")
            self.advance()
            q = self.query(nested=True)
            self.expect_op(")")
            return A.SubSelect(q, self.pos(t))
        if self.is_kw("TYPEOF") and self.peek().kind == IDENT:
            return self.typeof()
        if self.is_kw("FIELDS") and self.peek().kind == OP and self.peek().text == "(":
            self.advance()
            self.advance()
            w = self.ident()
            if w.upper not in ("ALL", "STANDARD", "CUSTOM"):
                self.fail(f"unexpected token: {w.text}, expecting ALL, STANDARD or CUSTOM", w)
            self.expect_op(")")
            return A.FieldsFn(w.upper, self.pos(t))
        e = self.expr()
        alias = None
        if self.tok.kind == IDENT and self.tok.upper not in CLAUSE_WORDS:
            alias = self.advance().text
        return A.SelectExpr(e, alias, self.pos(t))

    def typeof(self) -> A.TypeOf:
        t = self.advance()
        fld = self.field_ref()
        whens: list[A.TypeOfWhen] = []
        while self.accept_kw("WHEN"):
            type_name = self.ident().text
            self.expect_kw("THEN")
            whens.append(A.TypeOfWhen(type_name, tuple(self.field_list())))
        if not whens:
            self.fail(f"unexpected token: {self.tok.text or 'end of query'}, expecting WHEN")
        else_fields: tuple[A.FieldRef, ...] = ()
        if self.accept_kw("ELSE"):
            else_fields = tuple(self.field_list())
        self.expect_kw("END")
        return A.TypeOf(fld, tuple(whens), else_fields, self.pos(t))

    def field_list(self) -> list[A.FieldRef]:
        out = [self.field_ref()]
        while self.is_op(","):
            self.advance()
            out.append(self.field_ref())
        return out

    def field_ref(self) -> A.FieldRef:
        t = self.tok
        if t.kind == IDENT:  # a single name (the common case), without the helper calls
            i = self.i + 1  # an IDENT is never the last (EOF) token
            nxt = self.toks[i]
            if nxt.kind != OP or nxt.text != ".":
                self.i, self.tok = i, nxt
                return A.FieldRef((t.text,), (t.line, t.column))
        t = self.ident()
        parts = [t.text]
        while self.is_op("."):
            self.advance()
            parts.append(self.ident().text)
        return A.FieldRef(tuple(parts), (t.line, t.column))

    def expr(self) -> A.Expr:
        t = self.tok
        nxt = self.peek()
        if t.kind == IDENT and nxt.kind == OP and nxt.text == "(":
            name = self.advance().text
            self.advance()
            args: list[A.Expr] = []
            number = None
            if not self.is_op(")"):
                args = self.expr_list()
                if args and self.tok.kind == NUMBER:  # PERCENTILE(field, 0.9): the list stopped after its comma
                    number = self.advance().text
            self.expect_op(")")
            return A.Call(name, tuple(args), self.pos(t), number)
        return self.field_ref()

    # --- conditions -------------------------------------------------------------------------------------------

    def condition(self) -> A.Cond:
        first = self.term()
        kind: type[A.And] | type[A.Or] | None = None
        items = [first]
        while self.tok.kind == IDENT and self.tok.upper in LOGICAL:
            op_tok = self.advance()
            node = LOGICAL[op_tok.upper]
            if kind is not None and node is not kind:
                self.fail("unexpected token: " + op_tok.text
                          + " (AND and OR cannot be mixed without parentheses)", op_tok)
            kind = node
            items.append(self.term())
        if kind is None:
            return first
        return kind(tuple(items), first.pos)

    def term(self) -> A.Cond:
        t = self.tok
        if self.is_kw("NOT") and not (self.peek().kind == IDENT and self.peek().upper == "IN"):
            self.advance()
            return A.Not(self.term(), self.pos(t))
        if self.is_op("("):
            self.advance()
            c = self.condition()
            self.expect_op(")")
            return A.Paren(c, self.pos(t))
        lhs = self.expr()
        op = self.comparison_op()
        if op in ("IN", "NOT IN", "INCLUDES", "EXCLUDES"):
            value: A.Literal | A.ListValue | A.Query = self.list_or_subquery(op)
        else:
            value = self.literal()
        return A.Comparison(lhs, op, value, self.pos(t))

    def comparison_op(self) -> str:
        name = _SINGLE_OPS.get(self._tok_text(0))
        if name is not None:
            self.advance()
            return name
        pair = _PAIR_OPS.get((self._tok_text(0), self._tok_text(1)))
        if pair is not None:
            self.advance()
            self.advance()
            return pair
        self.fail(f"unexpected token: {self.tok.text or 'end of query'}, expecting a comparison operator")
        raise AssertionError  # pragma: no cover

    def _tok_text(self, k: int) -> str:
        t = self.peek(k) if k else self.tok
        if t.kind == OP:
            return t.text
        return t.upper if t.kind == IDENT else "\0"

    def list_or_subquery(self, op: str) -> A.ListValue | A.Query:
        t = self.expect_op("(")
        if self.is_kw("SELECT"):
            if op not in ("IN", "NOT IN"):
                self.fail(f"a subquery is not allowed with {op}", self.tok)
            q = self.query(nested=True)
            self.expect_op(")")
            return q
        items = [self.literal()]
        while self.is_op(","):
            self.advance()
            items.append(self.literal())
        self.expect_op(")")
        return A.ListValue(tuple(items), self.pos(t))

    def literal(self) -> A.Literal:
        t = self.tok
        p = self.pos(t)
        if t.kind == STRING:
            self.advance()
            return A.StringLit(t.text, p)
        if t.kind == NUMBER:
            self.advance()
            return A.NumberLit(t.text, p)
        if t.kind == DATE:
            self.advance()
            return A.DateLit(t.text, p)
        if t.kind == DATETIME:
            self.advance()
            return A.DateTimeLit(t.text, p)
        if t.kind == IDENT:
            up = t.upper
            if up == "NULL":
                self.advance()
                return A.NullLit(p)
            if up in ("TRUE", "FALSE"):
                self.advance()
                return A.BoolLit(up == "TRUE", p)
            if up in FIXED_DATE_LITERALS:
                self.advance()
                return A.DateFormula(up, None, p)
            if up in N_DATE_LITERALS:
                self.advance()
                self.expect_op(":")
                n = self.tok
                if n.kind != NUMBER or not n.text.isdigit():
                    self.fail(f"unexpected token: {n.text or 'end of query'}, expecting a number for {up}")
                self.advance()
                return A.DateFormula(up, int(n.text), p)
            m = _CURRENCY.match(t.text)
            if m:
                self.advance()
                return A.CurrencyLit(m.group(1).upper(), m.group(2), p)
        self.fail(f"unexpected token: {t.text or 'end of query'}, expecting a value")
        raise AssertionError  # pragma: no cover
