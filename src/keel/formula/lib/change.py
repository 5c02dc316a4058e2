"""Change tracking: ISNEW ISCHANGED PRIORVALUE. They read the context's prior record, so they exist only where a
write is happening (validation rules and flows) and never in SQL."""

from __future__ import annotations

from typing import Any

from keel.formula.fn import CHANGE_CONTEXTS, ArgError, Closure, Fn, sig, to_dec
from keel.formula.typed import BOOLEAN, NUMERIC, TField, TNode


def _field_arg(args: tuple[TNode, ...]) -> TNode:
    a = args[0]
    if not isinstance(a, TField) or a.path or a.formula is not None:
        raise ArgError(0, "the argument must be a field of this record (not a formula or a parent field)")
    return a


def _ischanged_typer(args: tuple[TNode, ...]) -> str:
    _field_arg(args)
    return BOOLEAN


def _priorvalue_typer(args: tuple[TNode, ...]) -> str:
    return _field_arg(args).type


def _norm(v: Any, numeric: bool) -> Any:
    if v == "":
        return None
    return to_dec(v) if numeric else v


def _isnew_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    return lambda r, c: c.is_new


def _ischanged_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    field = nodes[0]
    assert isinstance(field, TField)
    name, numeric = field.field.api_name, field.type in NUMERIC

    def run(r: Any, c: Any) -> bool:
        if c.is_new or c.prior is None:
            return False
        return bool(_norm(c.prior.get(name), numeric) != _norm(r.get(name), numeric))

    return run


def _priorvalue_lazy(cl: list[Closure], nodes: tuple[TNode, ...], ret: str) -> Closure:
    read = cl[0]
    return lambda r, c: None if c.is_new or c.prior is None else read(c.prior, c)


ROWS = [
    Fn("ISNEW", "ISNEW()", "TRUE when the record is being created.", 0, 0, sig((), BOOLEAN), lazy=_isnew_lazy,
       contexts=CHANGE_CONTEXTS, category="Change tracking"),
    Fn("ISCHANGED", "ISCHANGED(field)", "TRUE when an update changes the field (FALSE on create).", 1, 1,
       _ischanged_typer, lazy=_ischanged_lazy, contexts=CHANGE_CONTEXTS, raw=True, category="Change tracking"),
    Fn("PRIORVALUE", "PRIORVALUE(field)", "The field's value before this update (blank on create).", 1, 1,
       _priorvalue_typer, lazy=_priorvalue_lazy, contexts=CHANGE_CONTEXTS, raw=True,
       category="Change tracking"),
]
