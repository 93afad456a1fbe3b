"""What loading would run for each name a pickle can import: the generated knowledge base.

`scripts/refresh_pickle_knowledge.py` reads the standard library and the common ML and data
packages in a throwaway environment and writes `data/pickle_knowledge/`: for every
`module.qualname`, what a pickle that constructs it, calls it, sets its state or adds items
to it would run, and whether that code reaches a dangerous sink. The scanner never imports
those packages; it reads these files, and only those of the top-level modules a pickle names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

_DIR = "pickle_knowledge"


class Use(enum.Enum):
    """What a pickle stream does with an imported name, and so which of its code runs."""

    #: NEWOBJ, `copyreg.__newobj__`, `copyreg._reconstructor(cls, object, None)`: `cls.__new__`.
    CONSTRUCT = "construct"
    #: REDUCE, INST, OBJ, or handed to something that calls it: the body (a class: `__init__`).
    CALL = "call"
    #: BUILD on an instance: `__setstate__`, or a `__dict__` update plus `setattr` for slots.
    SETSTATE = "setstate"
    #: APPEND(S), SETITEM(S), ADDITEMS on an instance: `append`/`extend`/`__setitem__`/`add`.
    ITEMS = "items"


class Outcome(enum.Enum):
    SAFE = "safe"
    SINK = "sink"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "-"


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    #: For SINK: the sink and the path to it, as the generator wrote it.
    sink: str = ""


_UNKNOWN = Judgement(Outcome.UNKNOWN)
_COLUMNS = (Use.CONSTRUCT, Use.CALL, Use.SETSTATE, Use.ITEMS)


@dataclass(frozen=True)
class KnownName:
    """One `module.qualname` with its kind (`class`, `function`, `value`) and a verdict per use."""

    path: str
    kind: str
    judgements: tuple[Judgement, Judgement, Judgement, Judgement]

    def judge(self, use: Use) -> Judgement:
        return self.judgements[_COLUMNS.index(use)]


def _judgement(text: str) -> Judgement:
    if text.startswith("sink:"):
        return Judgement(Outcome.SINK, text[5:])
    try:
        return Judgement(Outcome(text))
    except ValueError:
        return _UNKNOWN


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    """Top-level module name -> data file stem."""
    folder = resources.files("modelward") / "data" / _DIR
    try:
        text = (folder / "index.tsv").read_text("utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    index: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            top, _, stem = line.partition("\t")
            index[top] = stem
    return index


@cache
def _names(stem: str) -> dict[str, tuple[str, str]]:
    """`module.qualname` -> (kind, the four verdict columns as one string), parsed lazily."""
    folder = resources.files("modelward") / "data" / _DIR
    names: dict[str, tuple[str, str]] = {}
    for line in (folder / f"{stem}.tsv").read_text("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        module, qualname, kind, verdicts = line.split("\t", 3)
        names[f"{module}.{qualname}"] = (kind, verdicts)
    return names


def lookup(module: str, qualname: str) -> KnownName | None:
    """The knowledge base's entry for `module.qualname`, or None when it does not know it.

    Packages move public classes to their top-level name (`pandas.PeriodDtype` is
    `pandas.core.dtypes.dtypes.PeriodDtype` in older pandas, whose files name it so): a
    name the knowledge base lacks is looked up under its shorter module prefixes too.
    """
    stem = _index().get(module.partition(".")[0])
    if stem is None:
        return None
    names = _names(stem)
    parts = module.split(".")
    entry = None
    for end in range(len(parts), 0, -1):
        entry = names.get(f"{'.'.join(parts[:end])}.{qualname}")
        if entry is not None:
            break
    if entry is None:
        return None
    path = f"{module}.{qualname}"
    kind, verdicts = entry
    columns = verdicts.split("\t")
    if len(columns) != len(_COLUMNS):
        return None
    judgements = tuple(_judgement(c) for c in columns)
    return KnownName(path, kind, judgements)  # type: ignore[arg-type]


def covered_modules() -> frozenset[str]:
    """Top-level modules the knowledge base has read (a name outside them is simply unknown)."""
    return frozenset(_index())
