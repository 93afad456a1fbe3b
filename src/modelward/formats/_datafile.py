"""Lists that steer analysis (allowed operator domains, template escape names) live in data/."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def load_table(name: str) -> dict[str, Any]:
    """The parsed TOML file `modelward/data/<name>` (read once per process)."""
    text = files("modelward").joinpath("data", name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def name_set(name: str, key: str) -> frozenset[str]:
    """One list of names from a data file, as a set."""
    return frozenset(load_table(name)[key])
