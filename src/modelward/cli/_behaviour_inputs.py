"""What `scan-model` and `scan-data` share: `--device`, and the scan-then-load guard
(`modelward.behaviour.guard`) with its refusal shown as the static scan's report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modelward.cli._common import EXIT_FINDINGS, fail

if TYPE_CHECKING:
    from modelward.behaviour.guard import BehaviourInputs


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """`--device`: where the model runs (the behavioural checks follow the model)."""
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="where to run the model: auto (CUDA, else MPS, else CPU; the default), cpu,"
        " cuda, cuda:N or mps",
    )


def load_after_static_scan(
    args: argparse.Namespace, command: str, scanned: list[Path]
) -> BehaviourInputs | int:
    """The loaded model and data, or `EXIT_FINDINGS` after showing why the scan refused them.

    Any other problem is a `ModelwardError` for `main` to print.
    """
    from modelward.behaviour.guard import StaticScanRefusal
    from modelward.behaviour.guard import load_after_static_scan as load

    try:
        return load(
            args.model,
            args.data,
            fail_on=args.fail_on,
            device=args.device,
            scanned=scanned,
            caller=command,
        )
    except StaticScanRefusal as refusal:
        from modelward.report import RENDERERS

        sys.stdout.write(RENDERERS[args.format](refusal.report))
        return fail(str(refusal), EXIT_FINDINGS)
