"""Run a peer scanner that has a per-file Python API over every file under a path.

Runs inside `bench/.venv-peers` (not the modelward venv), standalone:

    bench/.venv-peers/bin/python bench/scan/peer_api.py picklescan|fickling PATH OUT.json

Writes `{"version": ..., "verdicts": {relative path: [status, detail]}}` where status is
flagged, clean, error or unsupported. The decision rules are documented in
docs/benchmarks.md ("Scanner").
"""

from __future__ import annotations

import json
import logging
import sys
import zipfile
from pathlib import Path
from typing import BinaryIO


def picklescan_verdict(path: Path) -> tuple[str, str]:
    """`picklescan -p FILE`: exit 1 (dangerous globals) is flagged, exit 2 is an error."""
    from picklescan.scanner import SafetyLevel, scan_file_path

    result = scan_file_path(str(path))
    dangerous = sorted(
        f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous
    )
    if result.issues_count > 0:
        return "flagged", ", ".join(dangerous)[:300]
    if result.scan_err:
        return "error", "scan_err"
    return "clean", ""


def fickling_verdict(path: Path) -> tuple[str, str]:
    """fickling's scan API: a result that is not `is_safe` (severity above LIKELY_SAFE, or a
    pickle it cannot parse or analyse) is flagged.

    Only what fickling's own sniffers take for pickles is given to it: zips through
    `scan_zip_archive` (their .pkl/.pickle/.bin members), object `.npy` files (the pickle after
    the header), and files that `fickling.polyglot.check_pickle` accepts or that open with a
    PROTO opcode. Anything else is unsupported: fickling parses any bytes as opcodes and would
    call a GGUF file unsafe.
    """
    import fickling
    from fickling.loader import _scan_bytes
    from fickling.polyglot import check_numpy, check_pickle

    if zipfile.is_zipfile(path):
        results = list(fickling.scan_zip_archive(str(path), graceful=True).values())
        if not results:
            return "unsupported", "zip without pickle members"
    else:
        with path.open("rb") as stream:
            is_numpy, numpy_pickle = check_numpy(stream)
            if numpy_pickle:
                results = [_scan_bytes(str(path), stream.read(), True, None)]
            elif is_numpy or not (_opens_with_proto(stream) or check_pickle(stream, 2)):
                return "unsupported", "not a pickle to fickling"
            else:
                results = [fickling.scan_file(str(path), graceful=True)]
    unsafe = [r for r in results if not r.is_safe]
    if unsafe:
        notes = [unsafe[0].severity.name, *unsafe[0].errors]
        return "flagged", "; ".join(notes)[:300]
    return "clean", ""


def _opens_with_proto(stream: BinaryIO) -> bool:
    stream.seek(0)
    head = stream.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


VERDICTS = {"picklescan": picklescan_verdict, "fickling": fickling_verdict}


def version(tool: str) -> str:
    from importlib.metadata import version as dist_version

    return dist_version(tool)


def main(argv: list[str]) -> int:
    tool, target, out = argv[1], Path(argv[2]), Path(argv[3])
    logging.disable(logging.CRITICAL)
    verdict = VERDICTS[tool]
    if target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.is_file())
        base = target
    else:
        files, base = [target], target.parent
    verdicts: dict[str, tuple[str, str]] = {}
    for path in files:
        try:
            verdicts[path.relative_to(base).as_posix()] = verdict(path)
        except Exception as exc:  # the tool crashing on a file is an error for that file
            verdicts[path.relative_to(base).as_posix()] = (
                "error",
                f"{type(exc).__name__}: {exc}"[:300],
            )
    out.write_text(json.dumps({"version": version(tool), "verdicts": verdicts}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
