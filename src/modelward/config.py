"""Scan settings: resource limits for hostile input and user extensions to the allow-list.

A config file is TOML, either a standalone file given with `--config` or the
`[tool.modelward]` table of a `pyproject.toml`:

    [scan]
    allow_globals = ["mypkg.layers.MyBlock"]     # exact module.qualname pairs
    strict = true                                # every name no list vouches for fails

    [scan.limits]
    max_decompressed_bytes = 1073741824

The same file may hold a `[policy]` table, read by `modelward.provenance.policy`
(`modelward gate`). Unknown keys are errors: a typo must not silently weaken a scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from modelward.errors import ModelwardError


class ConfigError(ModelwardError, ValueError):
    """The configuration file is unreadable or holds a key or value we do not accept."""


@dataclass(frozen=True)
class Limits:
    """Bounds on time and memory so that hostile input becomes a finding, not a hang."""

    #: Wall-clock seconds one top-level file may take.
    max_seconds_per_file: float = 120.0
    #: Bytes any one decompressed stream (joblib, gzip member, zip member) may expand to.
    max_decompressed_bytes: int = 8 * 1024**3
    #: Bytes all decompressing streams of one scanned file may produce together, across
    #: nesting levels, siblings and re-reads (zip members, gzip/bzip2/xz layers, compressed
    #: joblib). Four times the per-stream cap: a stream near that cap still gets the passes a
    #: scan makes over it (size it, then walk or scan it; joblib twice plus its object arrays),
    #: while a 42.zip-style file of many streams, each under the cap and nested several levels,
    #: stops after this much work, whatever the time limit is.
    max_total_decompressed_bytes: int = 32 * 1024**3
    #: Expansion ratio of a compressed member beyond which it is reported as a bomb.
    max_compression_ratio: float = 1000.0
    #: Containers inside containers (zip in tar in gzip ...).
    max_nesting_depth: int = 8
    #: Members one archive may hold.
    max_members: int = 100_000
    #: Opcodes one pickle stream may hold.
    max_pickle_opcodes: int = 50_000_000
    #: Bytes of one pickle stream held for analysis (strings, memo); tensor data is not held.
    max_pickle_bytes: int = 2 * 1024**3
    #: Pickle streams scanned back to back in one file.
    max_pickle_streams: int = 64
    #: Bytes of a header (safetensors JSON, GGUF metadata, npy dict) we agree to read.
    max_header_bytes: int = 100 * 1024**2


@dataclass(frozen=True)
class ScanConfig:
    """Everything a scan can be told; the defaults are what `modelward scan` uses."""

    limits: Limits = field(default_factory=Limits)
    #: Extra `module.qualname` globals the user declares safe (exact pairs only).
    allow_globals: frozenset[str] = frozenset()
    #: Fail closed: a pickle name that neither the lists nor the knowledge base vouch for is
    #: at least MEDIUM, however it is used (without it: INFO when only referenced, LOW when
    #: constructed, HIGH when called).
    strict: bool = False

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "config") -> ScanConfig:
        scan = data.get("scan", {})
        reject_unknown_keys(data, TOP_LEVEL_TABLES, source)
        if not isinstance(scan, dict):
            raise ConfigError(f"{source}: [scan] must be a table")
        reject_unknown_keys(scan, {"allow_globals", "limits", "strict"}, f"{source} [scan]")
        strict = scan.get("strict", False)
        if not isinstance(strict, bool):
            raise ConfigError(f"{source}: scan.strict must be true or false")
        allow = scan.get("allow_globals", [])
        if not isinstance(allow, list) or not all(isinstance(g, str) for g in allow):
            raise ConfigError(f"{source}: scan.allow_globals must be a list of strings")
        for name in allow:
            if "." not in name or name.endswith(".") or "*" in name:
                raise ConfigError(
                    f"{source}: allow_globals entry {name!r} must be an exact module.qualname"
                )
        limits_table = scan.get("limits", {})
        if not isinstance(limits_table, dict):
            raise ConfigError(f"{source}: [scan.limits] must be a table")
        known = {f.name: f for f in fields(Limits)}
        reject_unknown_keys(limits_table, set(known), f"{source} [scan.limits]")
        limit_values: dict[str, Any] = {}
        for key, value in limits_table.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{source}: scan.limits.{key} must be a positive number")
            limit_values[key] = value
        return cls(limits=Limits(**limit_values), allow_globals=frozenset(allow), strict=strict)

    @classmethod
    def from_file(cls, path: Path) -> ScanConfig:
        return cls.from_mapping(read_config_table(path), str(path))

    def digest(self) -> str:
        """A stable hex digest of everything here that can change a scan's findings.

        The results store keys cached results by it: another allow-list or other limits
        re-scan instead of reusing a result made under different settings. Computed once
        per config (it is asked for every file a run stores).
        """
        return _config_digest(self)


@lru_cache(maxsize=16)
def _config_digest(config: ScanConfig) -> str:
    doc: dict[str, object] = {
        "allow_globals": sorted(config.allow_globals),
        "limits": asdict(config.limits),
    }
    if config.strict:  # only when set, so existing digests (and stored results) stay valid
        doc["strict"] = True
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


#: Tables a config file may hold: `[scan]` here, `[policy]` in `modelward.provenance.policy`.
TOP_LEVEL_TABLES = {"scan", "policy"}


def read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when a config file is given: most scans have none

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc


def read_config_table(path: Path) -> dict[str, Any]:
    """The modelward table of a config file: the whole file, or a pyproject's [tool.modelward]."""
    data = read_toml(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("modelward", {})
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [tool.modelward] must be a table")
    return data


def reject_unknown_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def default_cache_dir() -> Path:
    """`$MODELWARD_CACHE_DIR`, else the platform's user cache folder + `/modelward`."""
    explicit = os.environ.get("MODELWARD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "modelward"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "modelward" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelward"
