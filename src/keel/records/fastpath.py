"""Per-object functions generated for the two loops that run once per row of every save.

A bulk load spends most of its Python time in two places: turning a client's draft into typed values, and turning
typed values into the tuple the driver inserts. Written as generic loops (a dict lookup and a call per field),
each costs a few microseconds per field; generated once per object as straight-line code (one dict display, one
tuple display, the common cases inlined) they cost a fraction of that, which is what keeps the lifecycle within
reach of a raw ``executemany``.

The generated code never embeds a name or value from metadata or input: field names, coercers and encoders are
bound in the function's namespace under positional names (``k0``, ``c0``, …), so a field called anything at all
cannot change the code. Anything unusual falls back to the generic path: a draft with other keys, a value the
inlined check does not accept, or any error, which the generic path then reports field by field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from keel.records.codec import PG_CONVERT, sqlite_date, sqlite_datetime
from keel.records.hooks import RowState
from keel.storage import ids

Draft = Mapping[str, Any]
Slow = Callable[[int, Draft], "RowState | None"]
DraftCoercer = Callable[[Sequence[Draft], Sequence[int], Slow], list[RowState]]
RowBuilder = Callable[[dict[str, Any], Any, Any, int, Any], list[Any]]

# Field slots for ``draft_coercer``: (input key, API name, coercer or None, length limit when the coercer is the
# plain text one, so the common "a short string" case needs no call).
Slot = tuple[str, str, Callable[[Any], Any] | None, int | None]
_TYPE_NAMES = {Decimal: "Decimal", int: "int", date: "date", datetime: "datetime", time: "time", bool: "bool",
               str: "str"}


def _compile(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    code = compile("\n".join(lines) + "\n", f"<keel generated {name}>", "exec")
    exec(code, namespace)  # the source comes from fixed templates and positional names only
    return namespace[name]


def draft_coercer(slots: Sequence[Slot], defaults: Sequence[tuple[str, Any]] = ()) -> DraftCoercer:
    """A function that coerces the drafts at the given indexes whose keys are exactly ``slots``' keys, in one dict
    display per row.

    ``defaults`` (API name, value) are the new record's defaults for fields the draft does not name, filled in
    the same display; rows built this way carry their ``changed`` set, which tells the lifecycle their defaults
    are done. ``slow(i, draft)`` handles every other draft (and every draft that raises), returning its row or
    None after reporting its errors, so results and error messages are exactly the generic path's."""
    ns: dict[str, Any] = {"RowState": RowState}
    items = []
    named = {s[1] for s in slots}
    # A draft naming OwnerId may leave it blank, which means "the actor": the generic step handles that.
    complete = "OwnerId" not in named
    for j, (api_name, value) in enumerate(d for d in defaults if d[0] not in named and complete):
        ns[f"dn{j}"], ns[f"dv{j}"] = api_name, value
        items.append(f"dn{j}: dv{j}")
    for j, (key, api_name, coerce, limit) in enumerate(slots):
        ns[f"k{j}"], ns[f"n{j}"], ns[f"c{j}"] = key, api_name, coerce
        if coerce is None:
            items.append(f"n{j}: d[k{j}]")
        elif limit is not None:
            items.append(f"n{j}: (x if type(x := d[k{j}]) is str and 0 < len(x) <= {int(limit)} else c{j}(x))")
        else:
            items.append(f"n{j}: c{j}(d[k{j}])")
    changed = "set(values)" if complete else "set()"
    lines = [
        "def coerce_drafts(drafts, indexes, slow):",
        "    out = []",
        "    append = out.append",
        "    for i in indexes:",
        "        d = drafts[i]",
        f"        if len(d) == {len(slots)}:",
        "            try:",
        f"                values = {{{', '.join(items)}}}",
        "            except Exception:",
        "                pass",
        "            else:",
        f"                append(RowState(i, values, None, None, {changed}))",
        "                continue",
        "        r = slow(i, d)",
        "        if r is not None:",
        "            append(r)",
        "    return out",
    ]
    fn: DraftCoercer = _compile("coerce_drafts", lines, ns)
    return fn


def row_builder(layout: Sequence[tuple[str, str, int, Callable[[Any], Any]]]) -> RowBuilder:
    """A function building one insert tuple from a row's values: the audit columns, then each writable column.

    ``layout`` gives per column (API name, storage kind, reference kind, encoder): the storage kind picks an
    inlined database form (``sqlite-date``, ``sqlite-datetime``, ``sqlite-number``, ``sqlite-boolean``; on
    PostgreSQL ``pg-<storage>``, an exact-type check that converts anything else), ``plain`` for none, or ``call``
    for the encoder; the reference kind is 0 for a value, 1 for a lookup (stored as its
    integer), 2 for a polymorphic lookup (integer plus key prefix), 3 for OwnerId (a user, or a queue as
    ``ids.split_owner`` stores it). A lookup holding a ``CanonicalId`` (its coercer checked it) is decoded with
    ``ids.trusted``."""
    ns: dict[str, Any] = {"split": ids.split, "split_owner": ids.split_owner, "trusted": ids.trusted,
                          "Canonical": ids.CanonicalId, "Decimal": Decimal, "date": date,
                          "datetime": datetime, "time": time, "int": int, "str": str, "bool": bool,
                          "sqlite_date": sqlite_date, "sqlite_datetime": sqlite_datetime}
    body = ["def build_row(v, pk, stamp, actor, deleted):", "    g = v.get"]
    out = ["pk", "stamp", "actor", "stamp", "actor", "stamp", "deleted", "1"]
    for j, (api_name, kind, ref, enc) in enumerate(layout):
        ns[f"n{j}"] = api_name
        body.append(f"    x{j} = g(n{j})")
        if ref:
            if ref == 3:  # an owner may be a queue: split_owner maps its 00G id to the owner column's integer
                body.append(f"    s{j} = None if x{j} is None else split_owner(x{j})")
            else:
                body.append(f"    s{j} = None if x{j} is None else "
                            f"trusted(x{j}) if type(x{j}) is Canonical else split(x{j})")
            out.append(f"None if s{j} is None else s{j}[1]")
            if ref == 2:
                out.append(f"None if s{j} is None else s{j}[0]")
        elif kind == "sqlite-date":
            out.append(f"(x{j}.isoformat() if type(x{j}) is date else sqlite_date(x{j}))")
        elif kind == "sqlite-datetime":
            out.append(f"(x{j}.isoformat(' ', 'microseconds') if type(x{j}) is datetime and x{j}.tzinfo is None "
                       f"else sqlite_datetime(x{j}))")
        elif kind == "sqlite-number":
            out.append(f"(float(x{j}) if type(x{j}) is Decimal else x{j})")
        elif kind == "sqlite-boolean":
            out.append(f"(None if x{j} is None else (1 if x{j} else 0))")
        elif kind.startswith("pg-"):
            types, ns[f"e{j}"] = PG_CONVERT[kind[3:]]
            exact = " or ".join(f"type(x{j}) is {_TYPE_NAMES[t]}" for t in types)
            if kind == "pg-datetime":
                exact = f"(type(x{j}) is datetime and x{j}.tzinfo is None)"
            out.append(f"(x{j} if x{j} is None or {exact} else e{j}(x{j}))")
        elif kind == "call":
            ns[f"e{j}"] = enc
            out.append(f"e{j}(x{j})")
        else:
            out.append(f"x{j}")
    body.append(f"    return [{', '.join(out)}]")
    fn: RowBuilder = _compile("build_row", body, ns)
    return fn
