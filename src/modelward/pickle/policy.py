"""Verdicts on imported globals, from the lists in `data/pickle_globals.toml`.

Deny entries are whole module trees or exact names (deny is broad); allow
entries are exact `module.qualname` pairs (allow is narrow). The user's
`allow_globals` adds exact pairs to the allow-list but never overrides deny.
`[wrappers]` are callables judged by what they wrap (`getattr`, `functools.partial`);
`[arguments]` says which arguments a helper constructs, calls or sets the state of.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from modelward._datafile import load_table

#: `__name__`-style attribute names, the usual road from an object to builtins.
DUNDER = re.compile(r"^__\w+__$")
#: Dunder module names that are ordinary (classes defined in a training script live in `__main__`).
ORDINARY_DUNDER_MODULES = frozenset({"__main__"})


class Role(enum.Enum):
    """What a helper does with one of its positional arguments."""

    NONE = ""
    CONSTRUCT = "construct"
    CALL = "call"
    SETSTATE = "setstate"
    #: The argument is serialised data the helper deserialises (`torch.load` of bytes).
    LOAD = "load"


class GlobalVerdict(enum.Enum):
    """What the lists say of one imported global (`module.name`): allowed, denied or unknown."""

    ALLOWED = "allowed"
    DENIED = "denied"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class GlobalPolicy:
    """The lists, ready to answer `verdict(path)`, `wrapper(path)` and `argument_roles(path)`."""

    allow: frozenset[str]
    deny_globals: frozenset[str]
    deny_modules: frozenset[str]
    wrappers: Mapping[str, str]
    arguments: Mapping[str, tuple[Role, ...]]
    #: Python's special dunder names (`[dunders]`): setting one on an object changes its
    #: behaviour; other dunder-shaped keys are a library's instance data.
    special_dunders: frozenset[str] = frozenset()
    #: Callables no serializer calls at load (`builtins.print`): a call is a probe.
    side_effects: frozenset[str] = frozenset()
    #: Functions a person has read and found safe on the road to a sink (`[reviewed]`).
    reviewed: frozenset[str] = frozenset()

    def reviewed_road(self, sink: str) -> bool:
        """A knowledge-base sink (`LABEL via A > ... > Z`) reached through a reviewed function."""
        _, via, road = sink.partition(" via ")
        return bool(via) and any(step.strip() in self.reviewed for step in road.split(" > "))

    def with_allowed(self, extra: Iterable[str]) -> GlobalPolicy:
        extra = frozenset(extra)
        if not extra:
            return self
        return replace(self, allow=self.allow | extra)

    def verdict(self, path: str) -> GlobalVerdict:
        """Classify a dotted `module.qualname`.

        Deny wins over allow for the path itself. Every dotted suffix of an
        unlisted path is checked against deny too, because a loader resolves
        `pkg.sub.os.system` to whatever `os.system` is when `pkg.sub` imports
        `os`; an exact allow pair (`numpy.random._pickle.__randomstate_ctor`,
        `torch.jit._pickle.build_intlist`) is not second-guessed that way. The
        suffix rule is not narrowed to "module paths only": the joined path cannot
        tell a submodule from an attribute chain (`pkg` + `_pickle.loads`).
        """
        parts = path.split(".")
        if self._denied(parts):
            return GlobalVerdict.DENIED
        if path in self.allow or path in self.wrappers or path in self.arguments:
            return GlobalVerdict.ALLOWED
        if any(self._denied(parts[start:]) for start in range(1, len(parts))):
            return GlobalVerdict.DENIED
        return GlobalVerdict.UNKNOWN

    def _denied(self, parts: list[str]) -> bool:
        if ".".join(parts) in self.deny_globals:
            return True
        return any(".".join(parts[:n]) in self.deny_modules for n in range(1, len(parts) + 1))

    def wrapper(self, path: str) -> str | None:
        """`getattr`, `partial`, ... when `path` is a wrapper judged by what it wraps."""
        return self.wrappers.get(path)

    def argument_roles(self, path: str) -> tuple[Role, ...]:
        """What `path` does with each positional argument (empty: nothing we model)."""
        return self.arguments.get(path, ())


def dunder_parts(module: str, name: str) -> list[str]:
    """The `__x__` components of an import path, ignoring ordinary ones like `__main__`."""
    parts = [p for p in module.split(".") if p not in ORDINARY_DUNDER_MODULES]
    return [p for p in (*parts, *name.split(".")) if DUNDER.match(p)]


#: joblib's wrapper classes, by name. `NumpyUnpickler.load_build` tests the object a BUILD
#: made with `isinstance`, so any import path that reaches these classes counts
#: (`joblib.numpy_pickle.X`, `joblib._store_backends.numpy_pickle.X`, `joblib` +
#: `numpy_pickle.X`, `getattr(...)`): the array follows inline (`NumpyArrayWrapper`) or is
#: read from a file the pickle names (`NDArrayWrapper`: `np.load(allow_pickle=True)`;
#: `ZNDArrayWrapper`: a zlib file).
_WRAPPER_CLASSES = {
    "NumpyArrayWrapper": "inline",
    "NDArrayWrapper": "file",
    "ZNDArrayWrapper": "file",
}
#: Packages whose modules hold joblib's classes (scikit-learn < 0.23 vendored joblib).
_JOBLIB_PACKAGES = ("joblib", "sklearn.externals.joblib")


def wrapper_kind(path: str) -> str | None:
    """`inline` or `file` when the dotted `path` names one of joblib's wrapper classes."""
    package, _, name = path.rpartition(".")
    kind = _WRAPPER_CLASSES.get(name)
    if kind is None:
        return None
    inside = any(package == p or package.startswith(p + ".") for p in _JOBLIB_PACKAGES)
    return kind if inside else None


@lru_cache(maxsize=1)
def default_policy() -> GlobalPolicy:
    """The shipped lists; parsed once per process."""
    data = load_table("pickle_globals.toml")
    allow = frozenset(name for names in data["allow"].values() for name in names)
    return GlobalPolicy(
        allow=allow,
        deny_globals=frozenset(data["deny"]["globals"]),
        deny_modules=frozenset(data["deny"]["modules"]),
        wrappers=dict(data["wrappers"]),
        arguments={
            path: tuple(Role(role) for role in roles) for path, roles in data["arguments"].items()
        },
        special_dunders=frozenset(data["dunders"]["special"]),
        side_effects=frozenset(data["side_effects"]["globals"]),
        reviewed=frozenset(data["reviewed"]),
    )
