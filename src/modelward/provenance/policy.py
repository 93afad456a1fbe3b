"""Trust policy: what `modelward gate` requires of a model before CI lets it through.

The policy lives in the same file as the scan settings (`modelward.toml`, or the
`[tool.modelward]` table of a `pyproject.toml`), in a `[policy]` table:

    [policy]
    fail_on = "medium"              # scan findings at or above this fail the gate
    safetensors_only = true         # every weight file must be safetensors
    require_lock = true
    lock_file = "models.lock"       # relative to the config file

    [policy.sources]
    allowed_orgs = ["google", "meta-llama"]
    allowed_paths = ["models"]      # relative to the config file

    [policy.signatures]
    required = true
    trusted_keys = ["keys/release.pub.pem"]

Unknown keys are errors at every level, named with the file they come from;
paths are resolved against the folder of the file that names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelward.config import (
    ConfigError,
    ScanConfig,
    read_config_table,
    read_toml,
    reject_unknown_keys,
)
from modelward.findings import Severity

#: Names looked for in the current folder when no `--config` is given, in this order.
CONFIG_FILE = "modelward.toml"
PYPROJECT_FILE = "pyproject.toml"


@dataclass(frozen=True)
class SourcePolicy:
    """Where models may come from; no restriction while both lists are empty."""

    #: Hugging Face organisations (the `org` of `org/name`), compared case-insensitively.
    allowed_orgs: tuple[str, ...] = ()
    #: Folders (absolute, resolved) local models must lie in.
    allowed_paths: tuple[Path, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.allowed_orgs or self.allowed_paths)


@dataclass(frozen=True)
class SignaturePolicy:
    """Which signatures are required and whose keys are trusted to make them."""

    required: bool = False
    #: Public keys (PEM paths, absolute); a bundle must verify with one of them.
    trusted_keys: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Policy:
    """The `[policy]` table; the defaults gate on the scan alone (findings at medium or above)."""

    fail_on: Severity = Severity.MEDIUM
    #: Every weight file must be safetensors (pickle, ONNX, GGUF, Keras... fail).
    safetensors_only: bool = False
    #: Pickle-family weight files (pickle, PyTorch, joblib, TorchScript) fail.
    forbid_pickle: bool = False
    #: The model must have an entry in the lock file, and match it.
    require_lock: bool = False
    #: The lock file (absolute); checked when it exists, required when `require_lock`.
    lock_file: Path | None = None
    sources: SourcePolicy = field(default_factory=SourcePolicy)
    signatures: SignaturePolicy = field(default_factory=SignaturePolicy)

    @classmethod
    def from_mapping(
        cls, data: dict[str, Any], source: str = "config", base_dir: Path | None = None
    ) -> Policy:
        """Read a `[policy]` table; relative paths are taken from `base_dir` (default: cwd)."""
        base = (base_dir or Path.cwd()).resolve()
        where = f"{source} [policy]"
        reject_unknown_keys(
            data,
            {
                "fail_on",
                "safetensors_only",
                "forbid_pickle",
                "require_lock",
                "lock_file",
                "sources",
                "signatures",
            },
            where,
        )
        fail_on = data.get("fail_on", Severity.MEDIUM.label)
        if not isinstance(fail_on, str):
            raise ConfigError(f"{source}: policy.fail_on must be a severity name")
        try:
            severity = Severity.parse(fail_on)
        except ValueError as exc:
            raise ConfigError(f"{source}: policy.fail_on: {exc}") from None
        lock_name = data.get("lock_file")
        require_lock = _bool(data, "require_lock", source)
        if lock_name is None and require_lock:
            from modelward.provenance.lock import DEFAULT_LOCK_FILE

            lock_name = DEFAULT_LOCK_FILE
        sources = _table(data, "sources", source)
        reject_unknown_keys(sources, {"allowed_orgs", "allowed_paths"}, f"{where}.sources")
        signatures = _table(data, "signatures", source)
        reject_unknown_keys(signatures, {"required", "trusted_keys"}, f"{where}.signatures")
        orgs = _strings(sources, "allowed_orgs", f"{source}: policy.sources")
        for org in orgs:
            if not org or "/" in org:
                raise ConfigError(
                    f"{source}: policy.sources.allowed_orgs entry {org!r} must be an"
                    " organisation name (the `org` of `org/name`)"
                )
        keys = tuple(
            _path(base, k)
            for k in _strings(signatures, "trusted_keys", f"{source}: policy.signatures")
        )
        required = _bool(signatures, "required", source, "policy.signatures.")
        if required and not keys:
            raise ConfigError(
                f"{source}: policy.signatures.required is true but trusted_keys is empty"
            )
        return cls(
            fail_on=severity,
            safetensors_only=_bool(data, "safetensors_only", source),
            forbid_pickle=_bool(data, "forbid_pickle", source),
            require_lock=require_lock,
            lock_file=None if lock_name is None else _path(base, _string(lock_name, source)),
            sources=SourcePolicy(
                allowed_orgs=tuple(o.lower() for o in orgs),
                allowed_paths=tuple(
                    _path(base, p)
                    for p in _strings(sources, "allowed_paths", f"{source}: policy.sources")
                ),
            ),
            signatures=SignaturePolicy(required=required, trusted_keys=keys),
        )


@dataclass(frozen=True)
class ModelwardConfig:
    """The whole config file: scan settings and trust policy, and where they were read from."""

    scan: ScanConfig = field(default_factory=ScanConfig)
    policy: Policy = field(default_factory=Policy)
    #: The file read; None when no file was found and the defaults apply.
    path: Path | None = None

    @classmethod
    def from_file(cls, path: Path) -> ModelwardConfig:
        data = read_config_table(path)
        name = str(path)
        scan = ScanConfig.from_mapping(data, name)  # also rejects unknown top-level tables
        policy_table = data.get("policy", {})
        if not isinstance(policy_table, dict):
            raise ConfigError(f"{name}: [policy] must be a table")
        policy = Policy.from_mapping(policy_table, name, base_dir=path.resolve().parent)
        return cls(scan=scan, policy=policy, path=path)


def find_config(folder: Path | None = None) -> Path | None:
    """`./modelward.toml`, else a `./pyproject.toml` with a [tool.modelward] table, else None."""
    folder = folder or Path.cwd()
    candidate = folder / CONFIG_FILE
    if candidate.is_file():
        return candidate
    pyproject = folder / PYPROJECT_FILE
    if pyproject.is_file():
        tool = read_toml(pyproject).get("tool", {})
        if isinstance(tool, dict) and "modelward" in tool:
            return pyproject
    return None


def load_config(path: Path | None = None, folder: Path | None = None) -> ModelwardConfig:
    """The config at `path`, else the one discovered in `folder` (cwd), else the defaults."""
    found = path if path is not None else find_config(folder)
    return ModelwardConfig() if found is None else ModelwardConfig.from_file(found)


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [policy.{key}] must be a table")
    return table


def _bool(data: dict[str, Any], key: str, source: str, prefix: str = "policy.") -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {prefix}{key} must be true or false")
    return value


def _string(value: Any, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: policy.lock_file must be a non-empty path string")
    return value


def _strings(data: dict[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key} must be a list of strings")
    return value


def _path(base: Path, text: str) -> Path:
    return (base / Path(text).expanduser()).resolve()


__all__ = [
    "CONFIG_FILE",
    "ModelwardConfig",
    "Policy",
    "SignaturePolicy",
    "SourcePolicy",
    "find_config",
    "load_config",
]
