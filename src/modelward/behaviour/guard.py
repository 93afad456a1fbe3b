"""Scan statically, then load: the guard in front of every behavioural check.

The behavioural checks run a TorchScript model (`torch.jit.load` executes the file's
TorchScript, not arbitrary Python, but it is still loading a model). So the files are
scanned statically first and refused when that scan has findings at or above a severity;
only then are the model and its data (`np.load(allow_pickle=False)`) loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.errors import ModelwardError
from modelward.findings import Severity

if TYPE_CHECKING:
    from modelward.findings import ScanReport


class BehaviourInputError(ModelwardError):
    """The model or its data cannot be scanned or loaded, or torch is not installed."""


class StaticScanRefusal(ModelwardError):
    """The static scan found something at or above the threshold; nothing was loaded.

    `report` is that scan's report, for the caller to show.
    """

    def __init__(self, message: str, report: ScanReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class BehaviourInputs:
    """A loaded TorchScript model and the npz's `x` (float32) and `y` (int64)."""

    model: Any
    x: Any
    y: Any


def load_after_static_scan(
    model: str | PathLike[str],
    data: str | PathLike[str],
    *,
    fail_on: Severity = Severity.HIGH,
    device: str = "auto",
    scanned: Sequence[str | PathLike[str]] | None = None,
    caller: str = "the behavioural checks",
) -> BehaviourInputs:
    """Scan `scanned` (default: `model`) statically, refuse on findings, then load.

    Raises `StaticScanRefusal` when the scan has a finding at or above `fail_on`, and
    `BehaviourInputError` for a missing file, no torch (`caller` needs it), unreadable
    data (an npz with `x` and `y`), an unknown or absent `device`, or a model that does
    not load there.
    """
    from modelward import scan

    paths = [Path(p) for p in (scanned if scanned is not None else [model])]
    try:
        report = scan(*paths)
    except FileNotFoundError as exc:
        raise BehaviourInputError(str(exc)) from exc
    if report.has_findings_at(fail_on):
        names = " and ".join(str(p) for p in paths)
        raise StaticScanRefusal(
            f"refusing to load {names}: the static scan has findings at or above {fail_on.label}",
            report,
        )
    try:
        import numpy as np
        import torch
    except ImportError:
        raise BehaviourInputError(
            f"{caller} needs torch: pip install 'modelward[behaviour]'"
        ) from None
    try:
        with np.load(data, allow_pickle=False) as arrays:
            x, y = arrays["x"].astype(np.float32), arrays["y"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise BehaviourInputError(f"cannot read {data}: {exc}") from exc
    from modelward.behaviour._torch_utils import resolve_device

    try:
        where = resolve_device(device)
    except ValueError as exc:
        raise BehaviourInputError(str(exc)) from exc
    try:
        loaded = torch.jit.load(str(model), map_location=where)  # type: ignore[no-untyped-call]
    except (OSError, ValueError, RuntimeError) as exc:
        raise BehaviourInputError(f"cannot load {model} on {where}: {exc}") from exc
    return BehaviourInputs(loaded, x, y)
