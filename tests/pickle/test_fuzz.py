"""Hypothesis: random bytes and mutated real pickles never make the scanner raise or hang."""

from __future__ import annotations

import io
import pickle
import pickletools
import time
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelward
from fixtures.pickles import MALICIOUS, numpy_arrays, plain_containers, scan_bytes
from modelward.config import ScanConfig
from modelward.findings import Location, ScanResult
from modelward.formats.interface import ScanContext
from modelward.formats.pickle import looks_like_pickle, scan_pickle_stream
from modelward.pickle.opcodes import OPCODES, Arg
from modelward.scanner import dispatch

SEEDS = [
    *(plain_containers(p) for p in range(6)),
    numpy_arrays(2),
    numpy_arrays(5),
    MALICIOUS["memo-stack-global"](),
    MALICIOUS["nested-in-state-dict"](),
    MALICIOUS["inst"](),
    MALICIOUS["build-dunder-on-allowed-global"](),
]
PER_EXAMPLE = settings(deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated_pickles(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def scan_bounded(data: bytes) -> ScanResult:
    ctx = ScanContext(
        config=ScanConfig(),
        result=ScanResult("fuzz.pkl"),
        dispatch=dispatch,
        deadline=time.monotonic() + 10,
    )
    walked = scan_pickle_stream(io.BytesIO(data), Location("fuzz.pkl"), ctx)
    assert walked <= ScanConfig().limits.max_pickle_streams
    return ctx.result


@PER_EXAMPLE
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(data: bytes) -> None:
    looks_like_pickle(data)
    result = scan_bounded(data)
    if not result.findings and data:
        # A clean verdict must mean the stdlib's own opcode parser accepts the stream too.
        assert list(pickletools.genops(data))


@PER_EXAMPLE
@given(mutated_pickles())
def test_mutated_pickles_never_raise(data: bytes) -> None:
    looks_like_pickle(data[:4096])
    for finding in scan_bounded(data).findings:
        assert finding.location.offset is None or 0 <= finding.location.offset <= len(data)


@settings(
    max_examples=15,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=mutated_pickles())
def test_mutated_pickles_through_the_public_api(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "mutant.pkl"
    path.write_bytes(data)
    [result] = modelward.scan(path).results
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}
    assert result.errors == []


def test_malicious_seeds_still_flagged_when_wrapped_in_garbage() -> None:
    data = pickle.dumps([1], protocol=2) + MALICIOUS["inst"]() + b"\x00\x01\x02"
    walked, findings = scan_bytes(data)
    assert walked == 2
    assert {f.rule_id for f in findings} == {"MW-PICKLE-DANGEROUS-GLOBAL", "MW-PICKLE-TRAILING"}


def _opcode_bytes() -> st.SearchStrategy[bytes]:
    """One opcode with a well-formed (but random) argument, from our own table."""
    small = st.binary(max_size=6)
    by_arg: dict[Arg, st.SearchStrategy[bytes]] = {
        Arg.NONE: st.just(b""),
        Arg.U1: st.binary(min_size=1, max_size=1),
        Arg.U2: st.binary(min_size=2, max_size=2),
        Arg.I4: st.binary(min_size=4, max_size=4),
        Arg.U4: st.binary(min_size=4, max_size=4),
        Arg.U8: st.binary(min_size=8, max_size=8),
        Arg.F8: st.binary(min_size=8, max_size=8),
        Arg.DECIMAL_LINE: st.integers(0, 20).map(lambda n: b"%d\n" % n),
        Arg.FLOAT_LINE: st.just(b"1.5\n"),
        Arg.QUOTED_LINE: st.just(b"'x'\n"),
        Arg.UNICODE_LINE: st.just(b"x\n"),
        Arg.ASCII_LINE: st.just(b"pid\n"),
        Arg.TWO_LINES: st.sampled_from([b"os\nsystem\n", b"collections\nOrderedDict\n"]),
    }
    counted = small.map(lambda b: bytes([len(b)]) + b)
    ops = []
    for code, op in OPCODES.items():
        arg = by_arg.get(op.arg, counted if op.arg.name.endswith("U1") else st.just(b"\x00" * 8))
        ops.append(arg.map(lambda a, c=code: bytes([c]) + a))
    return st.one_of(ops)


@PER_EXAMPLE
@given(st.lists(_opcode_bytes(), max_size=60))
def test_random_opcode_programs_never_raise(ops: list[bytes]) -> None:
    data = b"\x80\x04" + b"".join(ops) + b"."
    for finding in scan_bounded(data).findings:
        assert finding.location.offset is None or 0 <= finding.location.offset <= len(data)
