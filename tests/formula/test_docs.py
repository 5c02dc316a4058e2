"""docs/formulas.md documents every function and operator of the function table."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.formula.functions import FUNCTIONS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "formulas.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_is_documented(name: str) -> None:
    fn = FUNCTIONS[name]
    if fn.operator:
        assert f"| `{fn.signature.replace('|', chr(92) + '|')}` |" in DOC, f"operator {name} missing from the table"
    else:
        assert f"#### {name}\n\n`{fn.signature}`" in DOC, f"function {name} has no entry"
