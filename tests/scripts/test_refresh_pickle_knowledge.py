"""The knowledge-base generator's analyser on tiny synthetic modules (no network, no ML)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "refresh_pickle_knowledge.py"

SOURCE = '''
import enum
import os
import pickle
from dataclasses import dataclass, field


class Gadget:
    """A class whose __setstate__ opens a path taken from the state."""

    def __init__(self, path):
        self.path = path

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.path) as handle:
            self.data = handle.read()


def restore(blob):
    return _helper(blob)


def _helper(blob):
    return pickle.loads(blob)


@dataclass
class Point:
    x: int = 0
    y: int = 0
    tags: list = field(default_factory=list)


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


class Base:
    def __setstate__(self, state):
        self.__dict__.update(state)
        self._after_load()

    def _after_load(self):
        pass


class Child(Base):
    def _after_load(self):
        os.system(self.command)


class Bag(list):
    def append(self, item):
        super().append(item)


def read_fixed():
    with open("/etc/hostname") as handle:
        return handle.read()
'''


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[str]]:
    root = tmp_path_factory.mktemp("kbmods")
    pkg = root / "kbtoy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "gadgets.py").write_text(textwrap.dedent(SOURCE))
    spec = importlib.util.spec_from_file_location("refresh_pickle_knowledge", SCRIPT)
    assert spec is not None and spec.loader is not None
    script: Any = importlib.util.module_from_spec(spec)
    sys.modules["refresh_pickle_knowledge"] = script
    spec.loader.exec_module(script)
    sys.path.insert(0, str(root))
    try:
        result = script.worker(
            {
                "group": "kbtoy",
                "groups": {"kbtoy": "kbtoy"},
                "tops": ["kbtoy"],
                "dists": [],
                "budget": 60,
                "import_budget": 30,
            }
        )
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "kbtoy" or m.startswith("kbtoy.")]:
            sys.modules.pop(name)
        sys.modules.pop("refresh_pickle_knowledge", None)
    return {(r[0], r[1]): r[2:] for r in result["rows"]}


def verdict(rows: dict[tuple[str, str], list[str]], qualname: str, use: str) -> str:
    _kind, *verdicts = rows[("kbtoy.gadgets", qualname)]
    return verdicts[["construct", "call", "setstate", "items"].index(use)]


def test_setstate_that_opens_a_path_is_a_sink(rows: dict[tuple[str, str], list[str]]) -> None:
    # the path starts at the name's own code, named by its last part
    assert verdict(rows, "Gadget", "setstate") == "sink:builtins.open via __setstate__"
    assert verdict(rows, "Gadget", "construct") == "safe"
    assert verdict(rows, "Gadget", "call") == "safe"


def test_helper_that_unpickles_is_a_sink(rows: dict[tuple[str, str], list[str]]) -> None:
    got = verdict(rows, "restore", "call")
    assert got.startswith("sink:pickle.loads via kbtoy.gadgets.restore > kbtoy.gadgets._helper")


def test_dataclass_and_enum_are_safe(rows: dict[tuple[str, str], list[str]]) -> None:
    for use in ("construct", "call", "setstate", "items"):
        assert verdict(rows, "Point", use) == "safe"
    assert verdict(rows, "Colour", "call") == "safe"
    assert rows[("kbtoy.gadgets", "Colour.RED")][0] == "value"


def test_method_override_is_followed_through_the_mro(
    rows: dict[tuple[str, str], list[str]],
) -> None:
    assert verdict(rows, "Base", "setstate") == "safe"
    assert verdict(rows, "Child", "setstate").startswith("sink:os.system via ")
    assert verdict(rows, "Bag", "items") == "safe"


def test_constant_path_is_not_attacker_chosen(rows: dict[tuple[str, str], list[str]]) -> None:
    assert verdict(rows, "read_fixed", "call") == "safe"
