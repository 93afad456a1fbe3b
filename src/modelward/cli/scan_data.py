"""`modelward scan-data`: which samples of this training set are poison?

Like `scan-model`, this runs the model (`torch.jit.load` executes the file's TorchScript), so
the model file and the data file are first scanned statically and refused on findings at or
above `--fail-on`. The data file is read with `allow_pickle=False`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._behaviour_inputs import add_device_argument
from modelward.cli._common import EXIT_CLEAN, EXIT_FINDINGS, fail, severity
from modelward.findings import Severity

if TYPE_CHECKING:
    from modelward.behaviour.data_scan import DataVerdict

EPILOG = """\
MODEL is a TorchScript file (torch.jit.save) trained on TRAIN.npz, which holds x (N, ...)
float32 training inputs in the model's input layout and y (N,) their labels as trained.
Needs the optional extra: pip install 'modelward[behaviour]'.

exit codes:
  0  no poisoned label found
  1  poisoned samples found, or the static scan refused MODEL or TRAIN.npz
  2  usage or I/O error, unreadable data, torch not installed
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan-data",
        help="find poisoned training samples with the model trained on them",
        description="Cluster each label's penultimate representations in two and flag the\n"
        "cluster that looks like other labels in input space, whatever its size. A trigger\n"
        "too large for that (blended, signal) is reverse-engineered as scan-model does; when\n"
        "it convicts the model, the target label's samples that respond like inputs stamped\n"
        "with it are flagged. Runs the model after a static scan of the model and data files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="TorchScript file")
    parser.add_argument(
        "--data", type=Path, required=True, metavar="TRAIN.npz", help="training inputs x, labels y"
    )
    parser.add_argument("--format", "-f", default="table", choices=("table", "json"))
    parser.add_argument(
        "--fail-on",
        default=Severity.HIGH,
        type=severity,
        metavar="SEVERITY",
        help="refuse to load MODEL or TRAIN.npz when its static scan has a finding at or above"
        " this severity (default: high)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="SCORE",
        help="score above which the trigger search calls the model backdoored (default: the"
        " one calibrated on digits CNNs; calibrate on clean models of your architecture)",
    )
    parser.add_argument(
        "--no-trigger-search",
        action="store_true",
        help="only the input-space test (faster on large models; misses blended triggers)",
    )
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.cli._behaviour_inputs import load_after_static_scan

    inputs = load_after_static_scan(args, "scan-data", [args.model, args.data])
    if isinstance(inputs, int):
        return inputs
    from modelward.behaviour.data_scan import DataScanSettings, scan_data

    model, x, y = inputs.model, inputs.x, inputs.y
    settings = DataScanSettings(trigger_search=not args.no_trigger_search)
    if args.threshold is not None:
        settings = replace(settings, model_threshold=args.threshold)
    try:
        verdict = scan_data(model, x, y, settings=settings)
    except (ValueError, RuntimeError) as exc:
        return fail(f"cannot run {args.model} on {args.data}: {exc}")
    sys.stdout.write(_render(args, verdict))
    return EXIT_FINDINGS if verdict.suspicious_classes else EXIT_CLEAN


def _render(args: argparse.Namespace, verdict: DataVerdict) -> str:
    findings = verdict.findings(str(args.data))
    if args.format == "json":
        document = {
            "model": str(args.model),
            "data": str(args.data),
            **verdict.to_dict(),
            "findings": [f.to_dict() for f in findings],
        }
        return json.dumps(document, indent=2) + "\n"
    found = len(verdict.flagged)
    lines = [
        f"{args.data}: "
        + (f"{found} samples look poisoned" if found else "no poisoned label found"),
        "  label  samples  flagged  foreignness (suspicious cluster / rest)",
    ]
    for result in verdict.classes:
        mark = f"  <- attacked ({result.evidence})" if result.attacked else ""
        flagged = len(result.suspicious) if result.attacked else 0
        lines.append(
            f"  {result.label:>5}  {result.count:>7}  {flagged:>7}"
            f"  {result.foreignness:+.2f} / {result.rest_foreignness:+.2f}{mark}"
        )
    lines.extend(f"  {f.rule_id} {f.message}" for f in findings)
    lines.append(f"  {verdict.seconds:.1f} s")
    return "\n".join(lines) + "\n"
