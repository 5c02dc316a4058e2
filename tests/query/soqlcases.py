"""Loader for ``cases/*.soql``: named SOQL cases with their expected outcome.

Format: ``=== name`` starts a case; SOQL lines follow; ``--> kind: value`` lines give expectations:
``ids:`` seed labels expected (set), ``ids!:`` the same in order, ``error: CODE L:C``, ``sql:`` a fragment of the
SQLite SQL, ``count: N`` the totalSize, ``json:`` a JSON object the response (or first record) must contain. Options:
``tz:`` the running user's time zone, ``fiscal:`` the month the fiscal year starts in (else the seeded
organisation's, January), ``all:`` queryAll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CASES_DIR = Path(__file__).parent / "cases"


@dataclass
class Case:
    name: str
    soql: str
    expect: list[tuple[str, str]] = field(default_factory=list)
    opts: dict[str, str] = field(default_factory=dict)

    def get(self, kind: str) -> list[str]:
        return [v for k, v in self.expect if k == kind]


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(CASES_DIR.glob("*.soql")):
        cur: Case | None = None
        lines: list[str] = []
        for raw in [*path.read_text(encoding="utf-8").splitlines(), "=== <end>"]:
            if raw.startswith("=== "):
                if cur is not None:
                    cur.soql = "\n".join(lines).strip()
                    cases.append(cur)
                cur, lines = Case(f"{path.stem}.{raw[4:].strip()}", ""), []
            elif raw.startswith("--> ") and cur is not None:
                kind, _, value = raw[4:].partition(":")
                cur.expect.append((kind.strip(), value.strip()))
            elif raw.startswith("#") and not lines:
                continue
            elif cur is not None and not cur.expect:
                lines.append(raw)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return [c for c in cases if c.name != f"{c.name.split('.')[0]}.<end>"]
