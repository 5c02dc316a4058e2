"""Email, note and webhook templates: Jinja2 in a sandbox, with merge fields read as the running user.

Merge fields (``{{ record.Name }}``, ``{{ record.Position__r.Name }}``) are found in the template's syntax tree,
checked against the schema and the running user's field permissions, and read with one SOQL query per batch, in
the save's transaction, with the user's row filter compiled in. A field the user cannot read renders blank, so a
template can never leak what the user could not open themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Connection

from keel.formula import field_sql
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.query import run_soql
from keel.storage import ids

if TYPE_CHECKING:
    from jinja2 import Template

    from keel.context import Context

CHUNK = 400
Renderer = Callable[[Mapping[str, Any]], str]


class Templates:
    """Compiled templates and their merge-field paths, cached per hooks object."""

    def __init__(self) -> None:
        self.env = SandboxedEnvironment(autoescape=False, finalize=lambda v: "" if v is None else v)
        self._cache: dict[str, tuple[Template, frozenset[tuple[str, ...]]]] = {}
        self._renderers: dict[str, Renderer] = {}
        self._plain: set[str] = set()  # texts rendered by a plain renderer: they read their merge fields only

    def compile(self, text: str) -> tuple[Template, frozenset[tuple[str, ...]]]:
        hit = self._cache.get(text)
        if hit is None:
            tree = self.env.parse(text)
            hit = (self.env.from_string(tree), frozenset(_paths(tree)))
            self._cache[text] = hit
        return hit

    def paths(self, texts: Iterable[str]) -> set[tuple[str, ...]]:
        out: set[tuple[str, ...]] = set()
        for t in texts:
            out |= self.compile(t)[1]
        return out

    def render(self, text: str, record: Mapping[str, Any], **extra: Any) -> str:
        if extra:
            return self.compile(text)[0].render(record=record, **extra)
        return self.renderer(text)(record)

    def renderer(self, text: str) -> Renderer:
        """``record -> str`` for one template, built once per text: a bulk email flow renders it per row."""
        fn = self._renderers.get(text)
        if fn is None:
            parts = _plain_parts(self.env.parse(text))
            if parts is None:
                template = self.compile(text)[0]
                fn = lambda record: template.render(record=record)  # noqa: E731
            else:
                fn = _plain_renderer(parts)
                self._plain.add(text)
            self._renderers[text] = fn
        return fn

    def all_plain(self, texts: Iterable[str]) -> bool:
        """Whether every text renders without Jinja, so reads nothing of a record but its merge fields."""
        for t in texts:
            self.renderer(t)
        return all(t in self._plain for t in texts)


def _plain_renderer(parts: list[str | tuple[str, ...]]) -> Renderer:
    """Text and merge fields without a Jinja context per row: a format string and one lookup per field."""
    fmt = "".join(p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{}" for p in parts)
    paths = [p for p in parts if not isinstance(p, str)]
    if not paths:
        return lambda record: fmt.format()
    if len(parts) == 1 and len(paths[0]) == 1:  # "{{ record.Email__c }}": the usual recipient template
        only = paths[0][0]
        return lambda record: "" if (v := record.get(only)) is None else str(v)
    if len(paths) == 1 and len(paths[0]) == 1:  # "Thank you, {{ record.Name }}": one field in text
        one = paths[0][0]
        return lambda record: fmt.format("" if (v := record.get(one)) is None else str(v))
    if all(len(p) == 1 for p in paths):
        names = [p[0] for p in paths]

        def flat(record: Mapping[str, Any]) -> str:
            get = record.get
            return fmt.format(*["" if (v := get(n)) is None else str(v) for n in names])

        return flat

    def nested(record: Mapping[str, Any]) -> str:
        values = []
        for path in paths:
            v: Any = record
            for name in path:
                v = v.get(name) if isinstance(v, Mapping) else None
            values.append("" if v is None else str(v))
        return fmt.format(*values)

    return nested


def _plain_parts(tree: nodes.Template) -> list[str | tuple[str, ...]] | None:
    """A template made only of text and ``{{ record.a.b }}`` as parts; None when it uses anything else."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None if tree.body else []
    parts: list[str | tuple[str, ...]] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
            continue
        chain: list[str] = []
        cur: nodes.Node = node
        while isinstance(cur, nodes.Getattr):
            chain.append(cur.attr)
            cur = cur.node
        if not (isinstance(cur, nodes.Name) and cur.name == "record" and chain):
            return None
        parts.append(tuple(reversed(chain)))
    return parts


def _paths(tree: nodes.Template) -> Iterable[tuple[str, ...]]:
    for node in tree.find_all(nodes.Getattr):
        chain: list[str] = []
        cur: nodes.Node = node
        while isinstance(cur, nodes.Getattr):
            chain.append(cur.attr)
            cur = cur.node
        if isinstance(cur, nodes.Name) and cur.name == "record":
            yield tuple(reversed(chain))


def _soql_fields(ctx: Context, schema: SchemaSnapshot, obj: ObjectDef, paths: Iterable[tuple[str, ...]]) -> list[str]:
    """The readable, existing fields among ``paths`` as SOQL select items (``Position__r.Name``)."""
    access = ctx.actor.access
    system = ctx.actor.is_system
    out: set[str] = {"Id"}
    for path in paths:
        cur = obj
        parts: list[str] = []
        for i, part in enumerate(path):
            last = i == len(path) - 1
            f = cur.find_field(part)
            if f is not None and (last or not f.is_relationship):
                if system or access.field_readable(cur.api_name, f.api_name):
                    parts.append(f.api_name)
                    out.add(".".join(parts))
                break
            rel = cur.find_relationship(part)
            if rel is None or not rel.reference_to or last:
                break
            if not (system or access.field_readable(cur.api_name, rel.api_name)):
                break
            target = schema.find_object(rel.reference_to[0])
            if target is None or not (system or access.can(target.api_name, "read")):
                break
            parts.append(rel.relationship_name or part)
            cur = target
    return sorted(out)


def _computed(obj: ObjectDef, name: str) -> bool:
    """A formula field is computed by the query, so a saved row in memory does not carry its value."""
    f = obj.find_field(name)
    return f is not None and f.type == "formula"


def read_for_templates(ctx: Context, conn: Connection, schema: SchemaSnapshot, obj: ObjectDef, pks: Sequence[int],
                       paths: Iterable[tuple[str, ...]],
                       in_memory: Mapping[int, Mapping[str, Any]] | None = None, *,
                       plain: bool = False) -> Mapping[int, Mapping[str, Any]]:
    """Records by primary key with the merge fields the running user can read; invisible records are absent.

    When every merge field is a field of the record itself and the caller has the rows the user just saved
    (``in_memory``; saving them needed access to them), the values come from memory, masked by field
    permissions, and no query runs: that keeps an email flow cheap on a bulk load. When, moreover, every merge
    field is readable and the templates are ``plain`` (they read their merge fields and nothing else), the
    in-memory records serve as they are, with no copy per row."""
    if not ctx.actor.is_system and not ctx.actor.access.can(obj.api_name, "read"):
        return {}
    paths = list(paths)
    fields = _soql_fields(ctx, schema, obj, paths)
    if in_memory is not None and all("." not in f and not _computed(obj, f) for f in fields):
        if plain and set(fields) == {"Id", *(".".join(p) for p in paths)}:
            return in_memory
        return {pk: {f: in_memory[pk].get(f) for f in fields} for pk in pks if pk in in_memory}
    access = ctx.actor.access
    sec: dict[str, Any] = {"security_key": ("system",)}
    if not ctx.actor.is_system:
        sec = {"row_filter": lambda o, t: access.record_filter(o, t, "read"),
               "field_mask": lambda o, f: access.field_readable(o.api_name, f.api_name),
               "security_key": getattr(access, "cache_key", None) or ("user", ctx.actor.user_id)}
    dialect = conn.dialect.name

    def formula_sql(o: ObjectDef, f: FieldDef, alias: Any) -> Any:
        return field_sql(f, o, schema, dialect, table_alias=alias)

    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(pks), CHUNK):
        part = pks[start:start + CHUNK]
        id_list = ", ".join(f"'{ids.encode(obj.key_prefix, pk)}'" for pk in part)
        soql = f"SELECT {', '.join(fields)} FROM {obj.api_name} WHERE Id IN ({id_list})"
        res = run_soql(conn, schema, soql, dialect=conn.dialect.name, query_all=True, now=ctx.clock(),
                       time_zone=ctx.actor.time_zone, formula_sql=formula_sql,
                       batch_size=len(part) + 1, user_id=ctx.actor.user_id, **sec)
        for rec in res["records"]:
            out[ids.split(rec["Id"])[1]] = rec
    return out
