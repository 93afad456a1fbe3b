"""Raw pickle files, and the stream scanner other formats call for embedded pickles.

PyTorch (`data.pkl`, legacy files), joblib and NumPy object arrays hand their
pickle bytes to `scan_pickle_stream`. Nothing here unpickles: the analysis in
`modelward.pickle` reads opcodes and runs them against a symbolic stack.
"""

from __future__ import annotations

from typing import BinaryIO

from modelward.findings import Location, Severity
from modelward.formats.interface import HEAD_SIZE, Blob, ScanContext
from modelward.pickle.analysis import analyse_stream
from modelward.pickle.sniff import looks_like_pickle
from modelward.pickle.walker import ByteSource

__all__ = ["PICKLE", "PickleScanner", "looks_like_pickle", "scan_pickle_stream"]


class JoblibStream(Exception):
    """The first stream builds joblib's array wrapper: raw array bytes follow its BUILD."""


def scan_pickle_stream(
    stream: BinaryIO,
    location: Location,
    ctx: ScanContext,
    *,
    max_streams: int | None = None,
    joblib_switch: bool = False,
) -> int:
    """Scan the pickle streams that follow one another from `stream`'s position.

    Walks at most `max_streams` (else up to `limits.max_pickle_streams`) and
    returns how many were walked; offsets in findings are relative to the
    position the stream had on entry. Stops quietly at end of data. Without
    `max_streams`, bytes after the last stream that are not a pickle are a LOW
    finding, and streams beyond the limit a MEDIUM one. A damaged stream ends
    the walk (what follows cannot be framed). With `joblib_switch`, a first stream that
    builds joblib's array wrapper raises `JoblibStream` before reporting anything.
    """
    limit = ctx.config.limits.max_pickle_streams if max_streams is None else max_streams
    source = ByteSource(stream, ctx.check_deadline, ctx.config.limits)
    walked = 0
    while walked < limit:
        if source.at_eof():
            return walked
        if walked and not looks_like_pickle(source.peek(HEAD_SIZE)):
            if max_streams is None:
                ctx.report(
                    "MW-PICKLE-TRAILING",
                    Severity.LOW,
                    location.at(source.offset),
                    f"{source.bytes_left_bound()} bytes after the last pickle stream are not a"
                    " pickle; a loader ignores them, but they can hide a payload for another"
                    " tool",
                    evidence=source.peek(16).hex(),
                )
            return walked
        outcome = analyse_stream(source, location, ctx, joblib_switch=joblib_switch and not walked)
        if outcome.joblib:
            raise JoblibStream
        walked += 1
        if outcome.damage is not None:
            return walked
    if max_streams is None and not source.at_eof():
        ctx.report(
            "MW-PICKLE-LIMIT",
            Severity.MEDIUM,
            location.at(source.offset),
            f"more than {limit} pickle streams back to back (max_pickle_streams);"
            " the rest was not scanned",
        )
    return walked


class PickleScanner:
    """A file that is one or more raw pickle streams (`.pkl`, `.pickle`, old `.bin`)."""

    name = "pickle"

    def detect(self, blob: Blob, head: bytes) -> bool:
        # The whole blob, not only the head: a first line longer than the head must not
        # turn a pickle into text.
        return looks_like_pickle(head, blob.open)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        """Walk the streams; one that turns out to be `joblib.dump` output (its array
        wrapper lies past what detection looked at, or is spelled another way) is scanned
        as joblib reads it."""
        try:
            with ctx.open(blob) as stream:
                scan_pickle_stream(stream, blob.location, ctx, joblib_switch=True)
        except JoblibStream:
            from modelward.formats.joblib import JOBLIB  # joblib builds on this module

            JOBLIB.scan(blob, ctx)


PICKLE = PickleScanner()
