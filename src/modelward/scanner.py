"""The core of a scan: walk the paths, detect each file's format by content, dispatch.

This is the small piece that joins the format scanners (`formats/`), the
findings model and the config. It knows nothing of stores, processes or Ray:
`runner` runs it for the CLI, the public API, `-j` workers, Ray tasks and the service.

This is what `modelward.scan` runs, and it is static: it reads bytes and parses them; it
never loads, unpickles, imports or runs anything it scans. Running a model is the job of
the behavioural checks (`modelward.scan_model`, in `behaviour/`), never of this module.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from modelward.config import ScanConfig
from modelward.findings import Finding, Location, ScanResult, Severity
from modelward.formats import SCANNERS
from modelward.formats.hf_folder import scan_model_folders
from modelward.formats.interface import HEAD_SIZE, Blob, ScanAborted, ScanContext
from modelward.pickle.sniff import looks_like_text

#: Folders never descended into when a directory is scanned.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})


def dispatch(blob: Blob, ctx: ScanContext) -> str:
    """Scan `blob` with the first scanner that recognises its bytes; return the format name.

    Limits hit inside a scanner and parser failures on malformed input become
    findings on the blob; only the per-file time limit ends the whole file.
    """
    try:
        # Sniffing is not counted as a read: the chosen scanner counts what it reads itself.
        head = blob.head(HEAD_SIZE)
        for scanner in SCANNERS:
            if scanner.detect(blob, head):
                scanner.scan(blob, ctx)
                return scanner.name
        return _unrecognised(blob, head, ctx)
    except ScanAborted as exc:
        ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)
        if exc.rule_id == "MW-LIMIT-TIME":
            raise
        return "aborted"
    except (MemoryError, RecursionError) as exc:
        ctx.report(
            "MW-LIMIT-MEMORY",
            Severity.MEDIUM,
            blob.location,
            f"scan ran out of {'memory' if isinstance(exc, MemoryError) else 'stack'};"
            " file not fully scanned",
        )
        return "aborted"
    except OSError as exc:
        ctx.result.errors.append(f"{blob.location}: cannot read: {exc}")
        return "unreadable"
    except Exception as exc:  # a parser bug on hostile input must not crash the run
        ctx.report(
            "MW-SCAN-ERROR",
            Severity.MEDIUM,
            blob.location,
            "scanner failed on this input; it may be malformed or crafted to evade scanning",
            evidence=f"{type(exc).__name__}: {exc}"[:500],
        )
        return "error"


#: Files that are no model, by their magic bytes (never by name), so a PNG called `model.pt` is
#: a note, not an unknown binary. Checked only after every format scanner declined: a file
#: whose walk from byte 0 reaches an import or a call is a pickle to the sniffer first,
#: whatever magic it starts with, and a zip appended to an image is still found as a zip.
#: The media magics also stop every pickle reader within themselves (`\xff`, `%`, `f`, `O`,
#: `w`, `\x00` are no opcode; `RIFF` starts with REDUCE on an empty stack; `II*`/`ID3` with
#: INT of a line that is no number); GIF is left out: `G` (BINFLOAT) swallows the next 8
#: bytes. Data formats that no model loader executes (Parquet, Arrow/Feather, netCDF,
#: MATLAB, CatBoost and fastText model files) are notes too.
_NOT_MODELS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PAR1", "Parquet table"),
    (0, b"ARROW1", "Arrow IPC / Feather table"),
    (0, b"FEA1", "Feather v1 table"),
    (0, b"CDF\x01", "netCDF classic dataset"),
    (0, b"CDF\x02", "netCDF 64-bit offset dataset"),
    (0, b"CDF\x05", "netCDF 64-bit data dataset"),
    (0, b"MATLAB 5.0 MAT-file", "MATLAB v5 data file"),
    (0, b"CBM1", "CatBoost model (flatbuffers, read by CatBoost's own parser)"),
    (0, b"\xba\x16\x4f\x2f", "fastText model (read by fastText's own parser)"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG image"),
    (0, b"\xff\xd8\xff", "JPEG image"),
    (8, b"WEBP", "WebP image"),
    (0, b"II*\x00", "TIFF image"),
    (0, b"MM\x00*", "TIFF image"),
    (0, b"%PDF-", "PDF document"),
    (8, b"WAVE", "WAV audio"),
    (0, b"fLaC", "FLAC audio"),
    (0, b"OggS", "Ogg media"),
    (0, b"ID3", "MP3 audio"),
    (4, b"ftyp", "MP4/QuickTime media"),
    (0, b"wOFF", "WOFF font"),
    (0, b"wOF2", "WOFF2 font"),
)


def not_a_model(head: bytes) -> str | None:
    """What kind of non-model file `head` starts, by its magic bytes; None if none we know."""
    for offset, magic, kind in _NOT_MODELS:
        if head[offset : offset + len(magic)] == magic:
            if offset == 8 and not head.startswith(b"RIFF"):
                continue
            if offset == 4 and not head.startswith(b"\x00\x00"):
                continue  # an MP4 box size; opcodes there could run on past `ftyp`
            return kind
    return None


def _unrecognised(blob: Blob, head: bytes, ctx: ScanContext) -> str:
    ctx.read_counter[0] += len(head)
    if blob.size == 0:
        return "empty"
    if looks_like_text(head):
        return "text"
    kind = not_a_model(head)
    if kind is not None:
        ctx.report(
            "MW-FORMAT-NOT-MODEL",
            Severity.INFO,
            blob.location,
            f"{kind}: no loader that runs code (pickle, torch, NumPy, joblib, Keras...) opens"
            " it, as its bytes, not its name, say; not scanned further",
        )
        return "not-a-model"
    ctx.report(
        "MW-FORMAT-UNKNOWN",
        Severity.MEDIUM,
        blob.location,
        "unrecognised binary format; not scanned (fail closed: review or scan with a tool"
        " that knows it)",
        evidence=head[:16].hex(),
    )
    return "unknown"


def scan_file(path: Path, config: ScanConfig, display: str | None = None) -> ScanResult:
    """Scan one file on disk by reading its bytes (never executing them).

    Never raises for anything the file contains.
    """
    start = time.monotonic()
    result = ScanResult(path=display if display is not None else str(path))
    if path.is_symlink() and not path.exists():
        result.format = "broken-symlink"
        result.findings.append(
            Finding(
                "MW-FILE-BROKEN-LINK",
                Severity.LOW,
                Location(result.path),
                "symbolic link whose target does not exist; nothing to scan",
                evidence=os.readlink(path),
            )
        )
        return result
    special = _special_kind(path)
    if special is not None:
        result.format = "special"
        result.findings.append(
            Finding(
                "MW-FILE-SPECIAL",
                Severity.MEDIUM,
                Location(result.path),
                f"not a regular file but a {special}: its bytes are made when it is read, so"
                " they cannot be scanned (and reading it could block forever); not read",
            )
        )
        return result
    try:
        blob = Blob.from_file(path, result.path)
    except OSError as exc:
        result.errors.append(f"cannot read: {exc.strerror or exc}")
        result.format = "unreadable"
        return result
    return scan_blob(blob, config, result, start)


def scan_blob(blob: Blob, config: ScanConfig, result: ScanResult, start: float) -> ScanResult:
    """Scan the bytes of `blob` (a local file, or a remote one read by range) into `result`.

    `start` (`time.monotonic`) is when the file's scan began: its time limit counts from it.
    """
    result.size = blob.size
    ctx = ScanContext(
        config=config,
        result=result,
        dispatch=dispatch,
        deadline=start + config.limits.max_seconds_per_file,
    )
    try:
        result.format = dispatch(blob, ctx)
    except ScanAborted:
        result.format = "aborted"
    result.bytes_read = ctx.read_counter[0]
    result.seconds = time.monotonic() - start
    return result


def _special_kind(path: Path) -> str | None:
    """ "FIFO", "socket" or "device" for such a file (links followed), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # reported by the read that follows
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return None


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under `paths`, folders recursively and in sorted order.

    Raises `FileNotFoundError` for a path that does not exist: a typo must not
    look like a clean scan.
    """
    for root in paths:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
                for name in sorted(filenames):
                    yield Path(dirpath) / name
        elif root.exists() or root.is_symlink():
            yield root  # a dangling link is reported by `scan_file`, not taken for a typo
        else:
            raise FileNotFoundError(f"no such file or directory: {root}")


def finish_results(
    files: Sequence[Path], results: list[ScanResult], config: ScanConfig
) -> list[ScanResult]:
    """What only the whole set of files shows, once every file has its result.

    Claims raw data files named by scanned models (in place in `results`) and returns the
    extra per-folder results (Hugging Face model folders) to append. Shared by the
    runner and the Ray driver so both report a folder the same way.
    """
    _claim_data_files(results)
    return scan_model_folders(files, config)


def _claim_data_files(results: list[ScanResult]) -> None:
    """An unknown binary that a scanned model names as its raw tensor data is that data.

    ONNX external data is raw bytes the runtime copies into tensors, never parses as
    code; without this a model saved with external data would fail every folder scan.
    """
    owners = {os.path.realpath(d): r.path for r in results for d in r.data_files}
    for result in results:
        if result.format != "unknown":
            continue
        owner = owners.get(os.path.realpath(result.path))
        if owner is None:
            continue
        result.format = "external-data"
        result.findings = [f for f in result.findings if f.rule_id != "MW-FORMAT-UNKNOWN"]
        result.findings.append(
            Finding(
                "MW-EXTERNAL-DATA",
                Severity.INFO,
                Location(result.path),
                "raw tensor data named by a scanned model; read as bytes, not parsed",
                evidence=owner,
            )
        )


__all__ = ["Location", "dispatch", "finish_results", "iter_files", "scan_blob", "scan_file"]
