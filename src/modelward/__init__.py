"""modelward: defend the AI supply chain.

Scan model files for code that runs on load, without loading them:

    >>> import modelward
    >>> report = modelward.scan("model.pt")
    >>> [f.rule_id for f in report.findings]
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

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
    from modelward.scanner import scan_paths

    return scan_paths([Path(p) for p in paths], config=config, jobs=jobs)


__all__ = [
    "Finding",
    "Limits",
    "Location",
    "ScanConfig",
    "ScanReport",
    "ScanResult",
    "Severity",
    "__version__",
    "scan",
]
