"""What `scan-model` and `scan-data` share: scan statically first, then load model and data.

Both commands run a TorchScript model (`torch.jit.load` executes the file's TorchScript,
not arbitrary Python, but it is still loading a model), so the files are scanned first and
refused when that scan has findings at or above `--fail-on`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class BehaviourInputs:
    """A loaded TorchScript model and the npz's `x` (float32) and `y` (int64)."""

    model: Any
    x: Any
    y: Any


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device`: where the model runs (the behavioural checks follow the model)."""
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="where to run the model: auto (CUDA, else MPS, else CPU; the default), cpu,"
        " cuda, cuda:N or mps",
    )


def fail(message: str, code: int) -> int:
    print(f"modelward: {message}", file=sys.stderr)
    return code


def load_after_static_scan(
    args: argparse.Namespace, command: str, scanned: list[Path]
) -> BehaviourInputs | int:
    """Scan `scanned` statically, refuse on findings, then load; an exit code on failure."""
    from modelward import scan
    from modelward.cli.main import EXIT_ERROR, EXIT_FINDINGS

    try:
        report = scan(*scanned)
    except FileNotFoundError as exc:
        return fail(str(exc), EXIT_ERROR)
    if report.has_findings_at(args.fail_on):
        from modelward.report import RENDERERS

        sys.stdout.write(RENDERERS[args.format](report))
        names = " and ".join(str(p) for p in scanned)
        return fail(
            f"refusing to load {names}: the static scan has findings at or above"
            f" {args.fail_on.label}",
            EXIT_FINDINGS,
        )
    try:
        import numpy as np
        import torch
    except ImportError:
        return fail(f"{command} needs torch: pip install 'modelward[behaviour]'", EXIT_ERROR)
    try:
        with np.load(args.data, allow_pickle=False) as data:
            x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        return fail(f"cannot read {args.data}: {exc}", EXIT_ERROR)
    from modelward.behaviour._torch_utils import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        return fail(str(exc), EXIT_ERROR)
    try:
        model = torch.jit.load(str(args.model), map_location=device)  # type: ignore[no-untyped-call]
    except (OSError, ValueError, RuntimeError) as exc:
        return fail(f"cannot load {args.model} on {device}: {exc}", EXIT_ERROR)
    return BehaviourInputs(model, x, y)
