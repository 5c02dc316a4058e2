"""YAML reading for metadata packages, with libyaml's C loader when PyYAML was built with it.

Installing the three apps reads a few hundred YAML files; the pure-Python loader made that several seconds of a
first ``keel up``. Both loaders are the safe one: plain data only, no Python objects.
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """Parse one YAML document as plain data (``yaml.safe_load`` semantics)."""
    return yaml.load(text, Loader=_LOADER)
