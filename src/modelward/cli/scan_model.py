"""`modelward scan-model`: is this TorchScript classifier backdoored?

Unlike `scan`, this check runs the model (`torch.jit.load` executes the file's TorchScript, not
arbitrary Python, but it is still loading a model). So the file is first scanned statically
and refused when that scan has findings at or above `--fail-on`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._behaviour_inputs import add_device_argument
from modelward.cli._common import EXIT_CLEAN, EXIT_FINDINGS, fail, severity
from modelward.findings import Severity

if TYPE_CHECKING:
    from modelward.behaviour.model_scan import ModelVerdict

EPILOG = """\
MODEL is a TorchScript file (torch.jit.save); CLEAN.npz holds x (N, C, H, W) float32 clean
inputs in the range the model expects and y (N,) their true labels (a few dozen per class).
Needs the optional extra: pip install 'modelward[behaviour]'.

exit codes:
  0  no backdoor found
  1  backdoor suspected, or the static scan refused MODEL (findings at or above --fail-on)
  2  usage or I/O error, unreadable data, torch not installed
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan-model",
        help="run a TorchScript classifier on clean data to look for a backdoor trigger",
        description="Reverse-engineer a trigger per label (Neural Cleanse family, K-Arm label\n"
        "scheduling, natural-easiness check, calibrated threshold). Runs the model after a\n"
        "static scan of the file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="TorchScript file")
    parser.add_argument(
        "--data", type=Path, required=True, metavar="CLEAN.npz", help="clean inputs x and labels y"
    )
    parser.add_argument("--format", "-f", default="table", choices=("table", "json"))
    parser.add_argument(
        "--trigger-out", type=Path, metavar="PNG", help="write the reversed trigger as a PNG"
    )
    parser.add_argument(
        "--fail-on",
        default=Severity.HIGH,
        type=severity,
        metavar="SEVERITY",
        help="refuse to load MODEL when its static scan has a finding at or above this"
        " severity (default: high)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="SCORE",
        help="score above which the model is called backdoored (default: the calibrated one)",
    )
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.cli._behaviour_inputs import load_after_static_scan

    inputs = load_after_static_scan(args, "scan-model", [args.model])
    if isinstance(inputs, int):
        return inputs
    from modelward.behaviour.model_scan import DEFAULT_THRESHOLD, scan_model

    model, x, y = inputs.model, inputs.x, inputs.y
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    try:
        verdict = scan_model(model, x, y, threshold=threshold)
    except (ValueError, RuntimeError) as exc:
        return fail(f"cannot run {args.model} on {args.data}: {exc}")
    if args.trigger_out:
        try:
            args.trigger_out.write_bytes(verdict.trigger_png())
        except OSError as exc:
            return fail(f"cannot write {args.trigger_out}: {exc.strerror or exc}")
    sys.stdout.write(_render(args, verdict))
    return EXIT_FINDINGS if verdict.backdoored else EXIT_CLEAN


def _render(args: argparse.Namespace, verdict: ModelVerdict) -> str:
    if args.format == "json":
        return json.dumps({"model": str(args.model), **verdict.to_dict()}, indent=2) + "\n"
    smallest = sorted(verdict.labels, key=lambda label: label.mask_l1)[:3]
    lines = [
        f"{args.model}: {'BACKDOOR SUSPECTED' if verdict.backdoored else 'no backdoor found'}",
        f"  score {verdict.score:.2f} (threshold {verdict.threshold:.2f}),"
        f" candidate target label {verdict.target_label}",
        f"  natural-easiness ratio {verdict.natural_ratio:.2f},"
        f" trigger box (row0, col0, row1, col1) {verdict.to_dict()['trigger_bbox']}",
        "  smallest masks: " + ", ".join(f"label {r.label}: L1 {r.mask_l1:.1f}" for r in smallest),
        f"  {verdict.seconds:.1f} s",
    ]
    if args.trigger_out:
        lines.append(f"  reversed trigger written to {args.trigger_out}")
    return "\n".join(lines) + "\n"
