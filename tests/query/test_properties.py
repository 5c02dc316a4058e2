"""Property tests: the parser never crashes on junk, formatted ASTs round-trip, values cannot change SQL structure."""

from __future__ import annotations

import contextlib
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from soqldata import make_schema

from keel.errors import KeelError, MalformedQueryError
from keel.query import ast as A
from keel.query import compile_soql, format_query, parse
from keel.query.tokens import escape

SCHEMA = make_schema()
KEYWORDS = ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "GROUP", "HAVING", "LIMIT",
            "OFFSET", "NULLS", "FIRST", "ASC", "DESC", "TYPEOF", "WHEN", "THEN", "END", "COUNT()", "(", ")", ",",
            ".", "=", "!=", "<", ">=", "'x'", "'", "\\", "null", "TODAY", "LAST_N_DAYS:3", "2024-01-01",
            "2024-01-01T00:00:00Z", "Id", "Name", "Account", "Contacts", "USD5", "1.5", "-3", ":", ";", "--", "\n"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_parser_never_crashes_on_text(text: str) -> None:
    try:
        parse(text)
    except MalformedQueryError as e:
        assert e.line >= 1 and e.column >= 1


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(KEYWORDS), max_size=25))
def test_parser_never_crashes_on_token_soup(words: list[str]) -> None:
    text = " ".join(words)
    try:
        parse(text)
    except MalformedQueryError as e:
        assert 1 <= e.line <= text.count("\n") + 1 and e.column >= 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(KEYWORDS), max_size=25))
def test_compiler_only_raises_keel_errors(words: list[str]) -> None:
    text = "SELECT Id FROM Account WHERE " + " ".join(words)
    with contextlib.suppress(KeelError):
        compile_soql(text, SCHEMA, dialect="sqlite")


# --- round trip -----------------------------------------------------------------------------------------------

idents = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s.upper() not in {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "INCLUDES",
                                "EXCLUDES", "NULL", "TRUE", "FALSE", "ORDER", "GROUP", "LIMIT", "OFFSET", "FOR",
                                "UPDATE", "USING", "WITH", "HAVING", "ASC", "DESC", "NULLS", "TYPEOF", "WHEN",
                                "THEN", "ELSE", "END", "FIELDS"}
    and not re.fullmatch(r"[A-Za-z]{3}\d+", s) and s.upper() not in _DATE_WORDS)
_DATE_WORDS = {"TODAY", "YESTERDAY", "TOMORROW", "THIS_YEAR", "LAST_N_DAYS", "SCOPE", "BY"}
paths = st.lists(idents, min_size=1, max_size=3).map(lambda p: A.FieldRef(tuple(p)))
literals = st.one_of(
    st.text(max_size=10).map(lambda s: A.StringLit(escape(s))),
    st.integers(0, 10**6).map(lambda n: A.NumberLit(str(n))),
    st.booleans().map(A.BoolLit),
    st.just(A.NullLit()),
    st.dates().map(lambda d: A.DateLit(d.isoformat())).filter(lambda d: len(d.text) == 10),
    st.sampled_from(["TODAY", "THIS_FISCAL_QUARTER", "LAST_WEEK"]).map(A.DateFormula),
    st.tuples(st.sampled_from(["LAST_N_DAYS", "N_MONTHS_AGO"]), st.integers(0, 99)).map(
        lambda t: A.DateFormula(t[0], t[1])),
    st.integers(1, 999).map(lambda n: A.CurrencyLit("USD", str(n))),
)
comparisons = st.one_of(
    st.builds(A.Comparison, paths, st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "LIKE"]), literals),
    st.builds(A.Comparison, paths, st.sampled_from(["IN", "NOT IN", "INCLUDES", "EXCLUDES"]),
              st.lists(literals, min_size=1, max_size=3).map(lambda xs: A.ListValue(tuple(xs)))),
)
conds = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.builds(A.Paren, inner),
        st.builds(A.Not, st.one_of(comparisons, st.builds(A.Paren, inner))),
        st.lists(st.one_of(comparisons, st.builds(A.Paren, inner)), min_size=2, max_size=3).map(
            lambda xs: A.And(tuple(xs))),
        st.lists(st.one_of(comparisons, st.builds(A.Paren, inner)), min_size=2, max_size=3).map(
            lambda xs: A.Or(tuple(xs))),
    ),
    max_leaves=6,
)
select_items = st.one_of(
    st.builds(A.SelectExpr, paths),
    st.builds(A.SelectExpr, paths.map(lambda p: A.Call("COUNT", (p,))), st.one_of(st.none(), idents)),
    st.just(A.FieldsFn("STANDARD")),
)
orders = st.builds(lambda e, d, n: A.OrderItem(e, d, n, d), paths, st.booleans(),
                   st.sampled_from([None, "FIRST", "LAST"]))
queries = st.builds(
    lambda sel, frm, alias, where, order, limit, offset, for_: A.Query(
        tuple(sel), frm, alias, None, where, None, (), None, None, tuple(order), limit, offset, for_),
    st.lists(select_items, min_size=1, max_size=4), idents, st.one_of(st.none(), idents),
    st.one_of(st.none(), conds), st.lists(orders, max_size=2), st.one_of(st.none(), st.integers(0, 5000)),
    st.one_of(st.none(), st.integers(0, 2000)), st.sampled_from([(), ("VIEW",), ("REFERENCE", "UPDATE")]),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(queries)
def test_format_parse_round_trip(q: A.Query) -> None:
    text = format_query(q)
    assert parse(text) == q, text
    assert format_query(parse(text)) == text


def test_round_trip_of_case_files() -> None:
    from soqlcases import load_cases
    n = 0
    for case in load_cases():
        try:
            q = parse(case.soql)
        except MalformedQueryError:
            continue
        assert parse(format_query(q)) == q, case.name
        n += 1
    assert n > 300


# --- injection --------------------------------------------------------------------------------------------------

NASTY = ["x' OR '1'='1", "'; DROP TABLE o_1; --", "\\' OR 1=1 --", "/* */", "x\" OR \"1\"=\"1", "é🙂\u202e",
         "%' --", "a;b", "\x00", "') UNION SELECT * FROM keel_query_cursor --"]


@given(st.one_of(st.sampled_from(NASTY), st.text(max_size=30)))
def test_values_cannot_change_sql(value: str) -> None:
    base = "SELECT Id, Name FROM Account WHERE Name = '{}' AND BillingCity LIKE '{}' AND Type IN ('{}', 'b')"
    ref = compile_soql(base.format("a", "b", "c"), SCHEMA, dialect="sqlite").sql
    lit = escape(value)
    try:
        got = compile_soql(base.format(lit, lit, lit), SCHEMA, dialect="sqlite").sql
    except MalformedQueryError:
        return  # e.g. a value ending in a lone backslash escape is rejected, never spliced
    assert got == ref


@given(st.sampled_from([*NASTY, "Name--", "Name;", "Name/**/", "Na me", '"Name"', "Name)", "o_1.name"]))
def test_identifiers_cannot_change_sql(ident: str) -> None:
    try:
        cq = compile_soql(f"SELECT {ident} FROM Account", SCHEMA, dialect="sqlite")
    except KeelError as e:
        assert e.code in ("MALFORMED_QUERY", "INVALID_FIELD")
        return
    raise AssertionError(f"crafted identifier compiled: {cq.sql}")


def test_same_query_different_values_share_sql() -> None:
    a = compile_soql("SELECT Id FROM Account WHERE Name = 'x' AND AnnualRevenue > 5", SCHEMA, dialect="postgresql")
    b = compile_soql("SELECT Id FROM Account WHERE Name = 'it\\'s' AND AnnualRevenue > 6", SCHEMA,
                     dialect="postgresql")
    assert a.sql == b.sql and "it's" not in b.sql


@given(st.integers(0, 62**12 - 1), st.sampled_from(["001", "a0B", "00T", "zzz"]))
def test_fast_id_encoder_matches_codec(n: int, prefix: str) -> None:
    from keel.query.shape import encode_id
    from keel.storage import ids
    assert encode_id(prefix, n) == ids.encode(prefix, n)
