"""Scan a pickle that is not a whole file: at an offset, or in pieces with raw data between.

NumPy object arrays hold a pickle after a header; joblib writes raw array bytes in the
middle of its pickle. The pickle scanner walks a plain stream from its start, so we give
it a view that skips everything that is not pickle, then move the offsets of its findings
back to where those bytes really are in the stream.
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Callable
from dataclasses import replace
from typing import BinaryIO, cast

from modelward.findings import Finding, Location, ScanResult
from modelward.formats.interface import ScanContext
from modelward.formats.pickle import scan_pickle_stream

_CHUNK = 1024 * 1024


class _Spliced(io.RawIOBase):
    """The concatenation of ascending byte ranges of `stream`, read forward only.

    `position` is where `stream` is now; the gaps between ranges are seeked over when the
    stream can seek, read and dropped when it cannot (a decompressing stream).
    """

    def __init__(
        self, stream: BinaryIO, ranges: list[tuple[int, int]], position: int, ctx: ScanContext
    ) -> None:
        self._stream = stream
        self._ranges = ranges
        self._index = 0
        self._position = position
        self._ctx = ctx

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._index < len(self._ranges):
            start, end = self._ranges[self._index]
            if self._position >= end:
                self._index += 1
                continue
            if self._position < start:
                self._advance(start)
            data = self._stream.read(min(len(buffer), end - self._position))
            if not data:
                return 0
            buffer[: len(data)] = data
            self._position += len(data)
            return len(data)
        return 0

    def _advance(self, target: int) -> None:
        if self._stream.seekable():
            self._stream.seek(target - self._position, io.SEEK_CUR)
            self._position = target
            return
        while self._position < target:
            self._ctx.check_deadline()
            data = self._stream.read(min(_CHUNK, target - self._position))
            if not data:
                return
            self._position += len(data)


def scan_pickle_ranges(
    stream: BinaryIO,
    ranges: list[tuple[int, int]],
    position: int,
    location: Location,
    ctx: ScanContext,
    keep: Callable[[Finding], bool] | None = None,
) -> int:
    """Scan the one pickle made of `ranges` of `stream`; return the streams walked (0 or 1).

    Findings at an offset inside the pickle are reported at the matching stream offset;
    with `keep`, only the findings it accepts (at their stream offsets).
    """
    inner = ScanResult(path=ctx.result.path)
    child = ScanContext(
        config=ctx.config,
        result=inner,
        dispatch=ctx.dispatch,
        depth=ctx.depth,
        deadline=ctx.deadline,
        read_counter=ctx.read_counter,
        budget=ctx.budget,
    )
    view = cast(BinaryIO, io.BufferedReader(_Spliced(stream, ranges, position, ctx)))
    try:
        return scan_pickle_stream(view, location, child, max_streams=1)
    finally:
        starts: list[int] = []
        total = 0
        for start, end in ranges:
            starts.append(total)
            total += end - start
        for finding in inner.findings:
            offset = finding.location.offset
            if offset is not None and finding.location.members == location.members:
                piece = max(bisect.bisect_right(starts, offset) - 1, 0)
                moved = ranges[piece][0] + offset - starts[piece]
                finding = replace(finding, location=finding.location.at(moved))
            if keep is None or keep(finding):
                ctx.result.findings.append(finding)
        ctx.result.errors.extend(inner.errors)
