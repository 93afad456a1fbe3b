"""The opcode walker and symbolic machine on hostile shapes: huge lengths, deep nesting,
large payloads, limits and the deadline. Memory is measured, not assumed."""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import time
import tracemalloc
from collections.abc import Callable

import pytest

from fixtures.pickles import (
    call_system_p4,
    numpy_arrays,
    ordered_dict,
    plain_containers,
    scan_bytes,
    scan_stream,
)
from modelward.config import ScanConfig
from modelward.findings import Finding, Location, ScanResult, Severity
from modelward.formats.interface import ScanAborted, ScanContext
from modelward.formats.pickle import scan_pickle_stream
from modelward.pickle.machine import PickleMachine
from modelward.pickle.opcodes import OPCODES
from modelward.pickle.policy import default_policy
from modelward.pickle.walker import ByteSource, PickleDamage, iter_opcodes
from modelward.scanner import dispatch

MIB = 1024 * 1024


class Unseekable(io.RawIOBase):
    """A stream that cannot tell its size, like a decompressing zip member."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def peak_memory(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_our_table_matches_every_stdlib_opcode() -> None:
    assert {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes} == {
        code: op.name for code, op in OPCODES.items()
    }


@pytest.mark.parametrize("opcode", [b"\x8d", b"\x8e", b"\x96"])  # BINUNICODE8 BINBYTES8 BYTEARRAY8
@pytest.mark.parametrize("seekable", [True, False])
def test_two_to_the_63_length_is_a_finding(opcode: bytes, seekable: bool) -> None:
    data = b"\x80\x05" + opcode + struct.pack("<Q", 2**63) + b"x" * 100 + b"."
    stream = io.BufferedReader(Unseekable(data)) if not seekable else io.BytesIO(data)
    findings: list[Finding] = []
    peak = peak_memory(lambda: findings.extend(scan_stream(stream)[1]))  # type: ignore[arg-type]
    [finding] = findings
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-MALFORMED", Severity.MEDIUM)
    assert finding.location.offset == 2
    assert peak < 4 * MIB


def test_large_payload_is_skipped_not_held() -> None:
    payload = b"\x00" * (48 * MIB)
    data = b"\x80\x05\x8e" + struct.pack("<Q", len(payload)) + payload + b"\x85."
    stream = io.BufferedReader(Unseekable(data))
    findings: list[Finding] = []
    del payload
    peak = peak_memory(lambda: findings.extend(scan_stream(stream)[1]))  # type: ignore[arg-type]
    assert findings == []
    assert peak < 8 * MIB


@pytest.mark.parametrize("unit", [b"(", b"(]", b"(}"])
def test_deep_nesting_is_reported_with_bounded_memory(unit: bytes) -> None:
    data = b"\x80\x02" + unit * 20_000 + b"N."
    findings: list[Finding] = []
    peak = peak_memory(lambda: findings.extend(scan_bytes(data)[1]))
    [nesting] = [f for f in findings if f.rule_id == "MW-PICKLE-NESTING"]
    assert nesting.location.offset == 2 + 1000 * len(unit)  # the 1001st MARK
    assert peak < 16 * MIB


def test_deep_real_nesting_is_not_reported() -> None:
    value: object = 1
    for _ in range(150):
        value = [value, {"k": (value,)}] if isinstance(value, int) else [value]
    assert scan_bytes(pickle.dumps(value, protocol=2))[1] == []


def test_opcode_limit() -> None:
    config = ScanConfig.from_mapping({"scan": {"limits": {"max_pickle_opcodes": 10}}})
    data = pickle.dumps(list(range(100)), protocol=0)
    [finding] = scan_bytes(data, config=config)[1]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-LIMIT", Severity.MEDIUM)


def test_held_bytes_limit() -> None:
    config = ScanConfig.from_mapping({"scan": {"limits": {"max_pickle_bytes": 4096}}})
    data = pickle.dumps([f"some text {i}" for i in range(2000)], protocol=4)
    [finding] = scan_bytes(data, config=config)[1]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-LIMIT", Severity.MEDIUM)


def test_deadline_aborts_but_keeps_earlier_findings() -> None:
    data = call_system_p4()[:-1] + b"N0" * 20_000 + b"."
    stream = io.BytesIO(data)
    ctx = ScanContext(ScanConfig(), ScanResult("x"), dispatch, deadline=time.monotonic() - 1)
    with pytest.raises(ScanAborted) as aborted:
        scan_pickle_stream(stream, Location("x"), ctx)
    assert aborted.value.rule_id == "MW-LIMIT-TIME"
    assert [f.severity for f in ctx.result.findings] == [Severity.CRITICAL]


def test_python2_names_are_mapped_like_a_loader() -> None:
    data = b"c__builtin__\neval\n(S'1'\ntR."
    [finding] = scan_bytes(data)[1]
    assert finding.evidence == "builtins.eval called with ('1',)"
    assert finding.severity == Severity.CRITICAL


def test_protocol_0_text_opcodes_decode() -> None:
    data = b"(lp0\nI1\naL2L\naF1.5\naS'a\\nb'\naVx\\u00e9\nag0\na(dp1\nS'k'\nNsa."
    assert pickle.loads(data)  # benign, hand-written, stdlib parses it too
    assert scan_bytes(data) == (1, [])


def test_persistent_ids_and_buffers_are_not_findings() -> None:
    data = b"\x80\x05(\x8c\x07storageQP1\n\x97\x98t."
    assert scan_bytes(data) == (1, [])


def test_computed_stack_global_is_high() -> None:
    # The module name comes out of a call: unknowable statically.
    data = b"\x80\x04\x8c\x08builtins\x8c\x03str\x93\x8c\x02os\x85R\x8c\x06system\x93."
    findings = scan_bytes(data)[1]
    assert any(
        f.rule_id == "MW-PICKLE-DYNAMIC-GLOBAL" and f.severity == Severity.HIGH for f in findings
    )


@pytest.mark.parametrize("unit", [b"(", b"(}", b"]", b"N", b"\x8c\x01a\x94"])
def test_max_pickle_bytes_bounds_real_memory(unit: bytes) -> None:
    budget = 4 * MIB
    config = ScanConfig.from_mapping({"scan": {"limits": {"max_pickle_bytes": budget}}})
    data = b"\x80\x04" + unit * 300_000 + b"."
    findings: list[Finding] = []
    peak = peak_memory(lambda: findings.extend(scan_bytes(data, config=config)[1]))
    assert "MW-PICKLE-LIMIT" in {f.rule_id for f in findings}
    assert peak < 3 * budget


def walk(data: bytes) -> list[tuple[int, str]]:
    limits = ScanConfig().limits
    source = ByteSource(io.BytesIO(data), lambda: None, limits)
    return [(offset, op.name) for offset, op, _ in iter_opcodes(source, limits, lambda: None)]


@pytest.mark.parametrize("protocol", range(6))
def test_walker_agrees_with_pickletools_on_real_pickles(protocol: int) -> None:
    for data in (plain_containers(protocol), numpy_arrays(protocol), ordered_dict(protocol)):
        expected = [(pos, op.name) for op, _, pos in pickletools.genops(data)]
        assert walk(data) == expected


# -- arguments read as Modules/_pickle.c reads them --------------------------------------

#: One-value pickles spelled the ways the C unpickler accepts (and a few it rejects).
SPELLINGS = [
    b"I0x10\n.",
    b"I0X1F\n.",
    b"I-0x10\n.",
    b"I010\n.",  # strtol: C octal
    b"I0o17\n.",
    b"I0b11\n.",
    b"I1_000\n.",
    b"I 5\n.",
    b"I5 \n.",
    b"I\t 5 \x0b\n.",
    b"I01\n.",  # True
    b"I00\n.",  # False
    b"I 1\n.",  # True: a 2-character line strtol reads as 1
    b"I+0\n.",
    b"I-0\n.",
    b"I1\n.",
    b"I\x00\n.",
    b"I5\x00anything\n.",
    b"I99999999999999999999999\n.",
    b"I" + b" " * 100_000 + b"7\n.",
    b"I08\n.",
    b"I0x\n.",
    b"I \x00\n.",
    b"I\n.",
    b"I12L\n.",
    b"L12L\n.",
    b"L0x10L\n.",
    b"L 1_0 L\n.",
    b"L5\x00L\n.",
    b"L-7\n.",
    b"L010\n.",
    b"L\n.",
    b"LL\n.",
    b"F1.5\n.",
    b"F.5\n.",
    b"F5.\n.",
    b"F-1e-3\n.",
    b"Finf\n.",
    b"F-Infinity\n.",
    b"F1.5\x00junk\n.",
    b"F 1.5\n.",
    b"F1.5 \n.",
    b"F1_0\n.",
    b"F1e500\n.",
    b"F1e\n.",
    b"F0x1p3\n.",
    b"I5\np 0 \n0g0_0\n.",
    b"I5\np00\ng0\n.",
    b"I5\np1_0\n0g10\n.",
    b"I5\np\x00\n.",
    b"I5\np-1\n.",
    b"S'abc'\n.",
    b'S"a\\x41"\n.',
    b"S'a\n.",
    b"S'\n.",
    b"T\x03\x00\x00\x00abc.",
    b"T\xff\xff\xff\xffabc.",
    b"Vcaf\\u00e9\n.",
    b"cbuiltins\n\nstr\n.",
]


def _loader(data: bytes) -> tuple[str, object]:
    try:
        return "ok", pickle.loads(data)  # the test's own bytes: plain values, no globals
    except Exception:
        return "rejected", None


def _walker(data: bytes) -> tuple[str, object]:
    limits = ScanConfig().limits
    source = ByteSource(io.BytesIO(data), lambda: None, limits)
    machine = PickleMachine(default_policy(), limits.max_pickle_bytes)
    try:
        ops = list(iter_opcodes(source, limits, lambda: None))
        for offset, opcode, arg in ops:
            machine.feed(offset, opcode, arg)  # memo keys are checked by the machine
    except PickleDamage:
        return "rejected", None
    values = [
        arg
        for _, op, arg in ops
        if op.name in ("INT", "LONG", "FLOAT", "STRING", "BINSTRING", "UNICODE")
    ]
    return "ok", values[0]


@pytest.mark.parametrize("data", SPELLINGS, ids=lambda d: repr(d[:24]))
def test_arguments_read_as_the_c_unpickler_reads_them(data: bytes) -> None:
    expected, value = _loader(data)
    if data.startswith(b"cbuiltins\n\n"):
        expected = "rejected"  # an empty module/name line (the loader never imports)
    got, mine = _walker(data)
    if expected == "ok" and b"g" in data:
        # memo spellings: the walk must reach STOP; the value is the INT's
        assert got == "ok"
        return
    assert got == expected
    if expected == "ok":
        assert type(mine) is type(value)
        assert mine == value or (mine != mine and value != value)  # nan


@pytest.mark.parametrize(
    "data",
    [d for d in SPELLINGS if _loader(d)[0] == "ok" and not d.startswith(b"T")],
    ids=lambda d: repr(d[:24]),
)
def test_a_call_after_each_accepted_spelling_is_caught(data: bytes) -> None:
    payload = data[:-1] + b"0cos\nsystem\n(S'true'\ntR."
    twin = data[:-1] + b"0cbuiltins\nstr\n(S'marker'\ntR."
    assert pickle.loads(twin) == "marker"
    findings = scan_bytes(payload)[1]
    assert any(
        f.rule_id == "MW-PICKLE-DANGEROUS-GLOBAL" and f.severity is Severity.CRITICAL
        for f in findings
    ), findings


def test_binstring_length_is_unsigned() -> None:
    # 0xffffffff is 4 GiB to _pickle.c, not -1: a truncation, like any length past the end.
    data = b"T\xff\xff\xff\xffabc."
    findings = scan_bytes(data)[1]
    assert [f.rule_id for f in findings] == ["MW-PICKLE-MALFORMED"]
    assert "declares 4294967295 bytes" in findings[0].message
