"""The layer contract of docs/architecture.md, checked with import-linter: imports point downward only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imports_point_down_the_layers() -> None:
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is part of the [test] extra"
    result = subprocess.run([lint, str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
