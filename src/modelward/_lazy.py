"""Lazy exports: a package's public names imported from their modules on first use.

A package that should import cheaply (no `cryptography`, `torch`, `httpx` or SQLAlchemy
until a name that needs it is touched) lists its names and their defining modules once:

    __getattr__, __dir__ = lazy_exports(__name__, {"scan_remote": "modelward.remote.scan"})

and keeps the same names under `if TYPE_CHECKING:` imports so that type checkers, and
users reading the source, see where each comes from. `dir(package)` and tab completion
list the lazy names before they are imported. A value `"module:attribute"` exports the
module's `attribute` under another name (an alias); a plain `"module"` exports the same name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`; `exports` maps a public name to its module.

    A name is looked up in its module each time it is read (importing the module the first
    time), so a name patched in its defining module is seen through the package too. Any
    other name raises the `AttributeError` Python itself would.
    """
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute or name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | table.keys())

    return __getattr__, __dir__
