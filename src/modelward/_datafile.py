"""Lists that steer analysis (allow/deny lists, operator sets, template names) live in data/.

They are hand-kept TOML, and parsing TOML in pure Python costs a small scan more than the
scan itself (~20 ms for the pickle lists). So each file is parsed once per content: the
parsed table is kept as JSON (parsed in C) in the user's cache folder, named by the
SHA-256 of the TOML text, and any edit of the file makes a new name. A cache folder that
cannot be read or written only costs the parse.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from modelward.config import default_cache_dir

#: The package's data folder (a plain folder: modelward is installed as files).
DATA_DIR = Path(__file__).parent / "data"


@cache
def load_table(name: str) -> dict[str, Any]:
    """The parsed TOML file `modelward/data/<name>` (read once per process)."""
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    cached = _cache_path(name, text)
    if cached is not None:
        try:
            table: dict[str, Any] = json.loads(cached.read_text(encoding="utf-8"))
            return table
        except (OSError, ValueError):
            pass
    import tomllib

    table = tomllib.loads(text)
    if cached is not None:
        _store(cached, table)
    return table


def name_set(name: str, key: str) -> frozenset[str]:
    """One list of names from a data file, as a set."""
    return frozenset(load_table(name)[key])


def _cache_path(name: str, text: str) -> Path | None:
    try:
        folder = default_cache_dir() / "data"
    except RuntimeError:  # no home folder to find a cache folder in
        return None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    return folder / f"{Path(name).stem}-{digest}.json"


def _store(path: Path, table: dict[str, Any]) -> None:
    """Write the JSON form atomically, only when it reads back as the same table."""
    try:
        encoded = json.dumps(table, separators=(",", ":"))
    except (TypeError, ValueError):  # a TOML date or time has no JSON twin: keep parsing
        return
    if json.loads(encoded) != table:  # a float NaN, say: keep parsing
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(encoded, encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        pass
