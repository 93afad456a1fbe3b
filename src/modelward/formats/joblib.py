"""joblib files (`joblib.dump`), plain or compressed, read without joblib or NumPy.

joblib is not a plain pickle: after each `joblib.numpy_pickle.NumpyArrayWrapper` object
(its BUILD opcode) it writes the array's bytes straight into the file, outside any pickle
frame: a padding-length byte, the padding, then the raw data; or, for object arrays, a
whole nested pickle. A linear opcode walker would read those bytes as opcodes.

So a scan takes two passes over the (decompressed) stream:

1. a layout pass runs the pickle machine (`modelward.pickle.machine`) with a hook on BUILD
   to read each wrapper's shape and dtype, and so learns where the raw bytes are (skipped)
   and where nested pickles are;
2. the pickle scanner then walks the outer pickle with the raw bytes spliced out (a valid
   pickle again), and each nested pickle on its own.

Compressed files (zlib, joblib's old `ZF` files, gzip, bz2, xz, lzma) are decompressed as a
stream, never as a whole, and capped at `max_decompressed_bytes`: a bomb is a finding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from typing import BinaryIO, cast

from modelward.findings import Finding, Severity
from modelward.formats._joblib_codecs import (
    DECOMPRESS_ERRORS,
    open_decompressed,
)
from modelward.formats._joblib_layout import ExternalArray, read_layout
from modelward.formats._magic import compression
from modelward.formats._spliced import scan_pickle_ranges
from modelward.formats._streams import CountingReader
from modelward.formats.interface import Blob, ScanAborted, ScanContext
from modelward.formats.pickle import looks_like_pickle

#: Where plain detection looks for a wrapper import: sklearn models have one early on.
DETECT_BYTES = 1024 * 1024
#: Compressed bytes detection may read to see the first decompressed bytes (one bz2 block).
DETECT_COMPRESSED_BYTES = 1024 * 1024
#: In every wrapper class name: `NumpyArrayWrapper`, `NDArrayWrapper`, `ZNDArrayWrapper`.
_WRAPPER = b"ArrayWrapper"


# -- the scanner ------------------------------------------------------------------------


class JoblibScanner:
    """`joblib.dump` output: a pickle with inline NumPy arrays, possibly compressed."""

    name = "joblib"

    def detect(self, blob: Blob, head: bytes) -> bool:
        codec = compression(head)
        if codec is not None:
            return looks_like_pickle(_first_decompressed(blob, codec))
        if not looks_like_pickle(head):
            return False
        if _WRAPPER in head:
            return True
        with blob.open() as stream:
            window = stream.read(DETECT_BYTES)
        return _WRAPPER in window

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with ctx.open(blob) as stream:
            codec = compression(stream.read(32))
        try:
            self._scan(blob, ctx, self._opener(blob, ctx, codec), plain=codec is None)
        except ScanAborted as exc:
            # A bomb or a corrupt compressed stream: a finding on this file, which stays joblib.
            if exc.rule_id == "MW-LIMIT-TIME":
                raise
            ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)

    def _scan(
        self, blob: Blob, ctx: ScanContext, opener: Callable[[], BinaryIO], plain: bool
    ) -> None:
        with opener() as stream:
            layout = read_layout(stream, ctx)
        if layout.problem is not None:
            offset, message, rule_id = layout.problem
            ctx.report(
                rule_id,
                Severity.MEDIUM,
                blob.location.at(offset),
                f"joblib file not read to its end ({message}); the rest is not scanned",
            )
        for external in layout.external:
            _report_external(external, blob, ctx)
        with opener() as stream:
            scan_pickle_ranges(stream, layout.outer, 0, blob.location, ctx)
        for piece in layout.nested:
            with opener() as stream:
                scan_pickle_ranges(stream, [piece], 0, blob.location, ctx)
        if plain and layout.arrays:
            self._scan_linear(blob, ctx, opener, layout.outer[0][1])

    @staticmethod
    def _scan_linear(
        blob: Blob, ctx: ScanContext, opener: Callable[[], BinaryIO], arrays_start: int
    ) -> None:
        """The same bytes as `pickle.load` or `torch.load` read them: straight on through the
        array bytes, which are opcodes to them. Up to the first array the two readings are
        the same (already reported). Past it, array bytes and nested pickles read on the outer
        stack and memo are mostly damage, computed names and names that fail to import, so
        only a dangerous name run there (critical) is kept: a payload hidden from joblib's
        reading in the bytes it takes for array data."""

        def runs_past_arrays(finding: Finding) -> bool:
            offset = finding.location.offset
            past = offset is not None and offset >= arrays_start
            dangerous = finding.rule_id == "MW-PICKLE-DANGEROUS-GLOBAL"
            return past and dangerous and finding.severity is Severity.CRITICAL

        with opener() as stream:
            scan_pickle_ranges(
                stream,
                [(0, ctx.config.limits.max_decompressed_bytes)],
                0,
                blob.location,
                ctx,
                runs_past_arrays,
            )

    @staticmethod
    def _opener(blob: Blob, ctx: ScanContext, codec: str | None) -> Callable[[], BinaryIO]:
        def plain() -> BinaryIO:
            return ctx.counted(blob.open())

        def decompressed() -> BinaryIO:
            assert codec is not None
            raw = ctx.counted(blob.open())
            limit = ctx.config.limits.max_decompressed_bytes
            return open_decompressed(codec, raw, limit, ctx.charge_decompressed)

        return plain if codec is None else decompressed


def _report_external(external: ExternalArray, blob: Blob, ctx: ScanContext) -> None:
    """A legacy wrapper: `joblib.load` opens the file it names, next to the dump or anywhere."""
    name = external.filename
    loads = (
        "np.load(..., allow_pickle=True)"
        if external.wrapper == "NDArrayWrapper"
        else "a zlib read into an array"
    )
    outside = name is None or PurePath(name).is_absolute() or ".." in PurePath(name).parts
    if outside:
        severity = Severity.CRITICAL if external.wrapper == "NDArrayWrapper" else Severity.HIGH
        where = "a path the pickle computes" if name is None else f"{name!r}"
        ctx.report(
            "MW-JOBLIB-EXTERNAL-ARRAY",
            severity,
            blob.location.at(external.offset),
            f"joblib.load reads this {external.wrapper}'s array from {where}, outside the"
            f" dump's folder, with {loads}: the pickle chooses which file is deserialised;"
            " do not load this file",
            evidence=f"{external.wrapper} filename={name!r}",
        )
    else:
        ctx.report(
            "MW-JOBLIB-EXTERNAL-ARRAY",
            Severity.LOW,
            blob.location.at(external.offset),
            f"joblib.load reads this {external.wrapper}'s array from the sibling file {name!r}"
            f" (a joblib < 0.10 multi-file dump) with {loads}; scan that file too",
            evidence=f"{external.wrapper} filename={name!r}",
        )


def _first_decompressed(blob: Blob, codec: str) -> bytes:
    """The first bytes a compressed blob decompresses to; empty if it does not decompress."""
    try:
        with blob.open() as raw:
            capped = CountingReader(raw, [0], DETECT_COMPRESSED_BYTES)
            with open_decompressed(codec, cast(BinaryIO, capped), 1024**2) as stream:
                return stream.read(64)
    except (ScanAborted, *DECOMPRESS_ERRORS):
        return b""


JOBLIB = JoblibScanner()

__all__ = ["JOBLIB", "JoblibScanner"]
