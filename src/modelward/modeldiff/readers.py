"""Which structural reader a file needs, decided by its bytes (the scanners' own `detect`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from modelward.config import ScanConfig
from modelward.findings import Finding, ScanResult, Severity
from modelward.formats.interface import HEAD_SIZE, Blob, FormatScanner, ScanAborted, ScanContext
from modelward.modeldiff.structure import DiffError, ModelStructure

Reader = Callable[[Blob, ScanContext], ModelStructure]


def _readers() -> list[tuple[FormatScanner, Reader]]:
    from modelward.formats.gguf import GGUF
    from modelward.formats.keras import KERAS
    from modelward.formats.onnx import ONNX
    from modelward.formats.pytorch import PYTORCH_LEGACY, PYTORCH_ZIP
    from modelward.formats.safetensors import SAFETENSORS
    from modelward.modeldiff import _gguf, _keras, _onnx, _safetensors, _torch

    # The order of `formats.SCANNERS`: ONNX has no magic number, so it comes last.
    return [
        (SAFETENSORS, _safetensors.read),
        (GGUF, _gguf.read),
        (PYTORCH_LEGACY, _torch.read_legacy),
        (PYTORCH_ZIP, _torch.read_zip_checkpoint),
        (KERAS, _keras.read),
        (ONNX, _onnx.read),
    ]


def _no_dispatch(blob: Blob, ctx: ScanContext) -> str:
    return "not-scanned"


def read_structure(
    path: Path, config: ScanConfig | None = None
) -> tuple[ModelStructure, list[Finding]]:
    """Read `path`'s structure; also return what reading it reported at MEDIUM or above.

    Raises `DiffError` for a format without a structural reader or a file too damaged
    to compare, and `OSError` when it cannot be opened.
    """
    config = config or ScanConfig()
    blob = Blob.from_file(path)
    head = blob.head(HEAD_SIZE)
    ctx = ScanContext(
        config=config,
        result=ScanResult(str(path)),
        dispatch=_no_dispatch,
        deadline=time.monotonic() + config.limits.max_seconds_per_file,
    )
    for scanner, reader in _readers():
        if scanner.detect(blob, head):
            try:
                structure = reader(blob, ctx)
            except ScanAborted as exc:
                raise DiffError(f"{path}: {exc.message}") from None
            except DiffError:
                raise
            except (ValueError, RecursionError) as exc:  # a damaged field deep in a reader
                raise DiffError(f"{path}: cannot read its structure ({exc})") from None
            structure.format = scanner.name
            problems = [f for f in ctx.result.findings if f.severity >= Severity.MEDIUM]
            return structure, problems
    raise DiffError(
        f"{path}: not a format diff can read (safetensors, GGUF, PyTorch checkpoint, Keras,"
        " ONNX); scan it with `modelward scan`"
    )
