"""modelward: defend the AI supply chain.

Scan model files for code that runs on load, without loading them:

    >>> import modelward
    >>> report = modelward.scan("model.pt")
    >>> [f.rule_id for f in report.findings]

`scan` only reads bytes: it never loads, unpickles or runs what it scans. `run_backdoor_scan`
(also reachable under its first name, `scan_model`) is the opposite: it *runs* an already
loaded PyTorch model on clean inputs to look for a backdoor, so scan the file first.
Every error meant for a user derives from `ModelwardError`. What is public and stable is
listed in `__all__` and in docs/api.md; other modules are internal.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from modelward._lazy import lazy_exports
from modelward.config import Limits, ScanConfig
from modelward.errors import ModelwardError
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


#: Imported on first use, so `import modelward` loads neither `cryptography` (integrity),
#: SQLAlchemy, CycloneDX nor torch (behaviour).
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
    "run_backdoor_scan": "modelward.behaviour.model_scan:scan_model",
    "scan_model": "modelward.behaviour.model_scan",
}

if TYPE_CHECKING:
    from modelward.behaviour.model_scan import scan_model
    from modelward.behaviour.model_scan import scan_model as run_backdoor_scan
    from modelward.integrity import hash_model, sign, verify
    from modelward.modeldiff import DiffResult, diff
    from modelward.provenance.bom import build_bom
    from modelward.provenance.gate import GateResult, gate
    from modelward.provenance.names import check_model_id, check_package
    from modelward.safe_loading import UnsafeModelError, safe_load


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all __getattr__
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DiffResult",
    "Finding",
    "GateResult",
    "Limits",
    "Location",
    "ModelwardError",
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
    "run_backdoor_scan",
    "safe_load",
    "scan",
    "scan_model",
    "sign",
    "verify",
]
