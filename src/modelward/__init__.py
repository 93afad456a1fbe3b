"""modelward: defend the AI supply chain.

Scan model files for code that runs on load, without loading them:

    >>> import modelward
    >>> report = modelward.scan("model.pt")
    >>> [f.rule_id for f in report.findings]
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.config import Limits, ScanConfig
from modelward.findings import Finding, Location, ScanReport, ScanResult, Severity

__version__ = "0.1.0"


def scan(
    *paths: str | PathLike[str],
    config: ScanConfig | None = None,
    jobs: int = 1,
) -> ScanReport:
    """Statically scan files or folders (recursively) and return the report.

    Nothing is loaded or executed; a path that does not exist raises `FileNotFoundError`.
    """
    from modelward.runner import scan_paths

    return scan_paths([Path(p) for p in paths], config=config, jobs=jobs)


#: Integrity API, imported on first use so `import modelward` does not load `cryptography`.
_LAZY = {
    "hash_model": "modelward.integrity",
    "sign": "modelward.integrity",
    "verify": "modelward.integrity",
    "safe_load": "modelward.safe_loading",
    "UnsafeModelError": "modelward.safe_loading",
    "gate": "modelward.provenance.gate",
    "GateResult": "modelward.provenance.gate",
    "diff": "modelward.modeldiff",
    "DiffResult": "modelward.modeldiff",
    "build_bom": "modelward.provenance.bom",
    "check_model_id": "modelward.provenance.names",
    "check_package": "modelward.provenance.names",
    "scan_model": "modelward.behaviour.model_scan",
}

if TYPE_CHECKING:
    from modelward.behaviour.model_scan import scan_model
    from modelward.integrity import hash_model, sign, verify
    from modelward.modeldiff import DiffResult, diff
    from modelward.provenance.bom import build_bom
    from modelward.provenance.gate import GateResult, gate
    from modelward.provenance.names import check_model_id, check_package
    from modelward.safe_loading import UnsafeModelError, safe_load


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelward' has no attribute {name!r}")


__all__ = [
    "DiffResult",
    "Finding",
    "GateResult",
    "Limits",
    "Location",
    "ScanConfig",
    "ScanReport",
    "ScanResult",
    "Severity",
    "UnsafeModelError",
    "__version__",
    "build_bom",
    "check_model_id",
    "check_package",
    "diff",
    "gate",
    "hash_model",
    "safe_load",
    "scan",
    "scan_model",
    "sign",
    "verify",
]
