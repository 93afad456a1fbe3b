"""`PickleMachine.run` (one loop, ordinary opcodes inline) does exactly what feeding the
machine every opcode of `iter_opcodes` does: same state, same damage, same position."""

from __future__ import annotations

import contextlib
import gc
import io
import pickle
import struct
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.pickles import MALICIOUS, numpy_arrays, ordered_dict, plain_containers
from modelward.config import Limits
from modelward.pickle.machine import PickleMachine, describe
from modelward.pickle.policy import default_policy
from modelward.pickle.walker import ByteSource, PickleDamage, iter_opcodes

SEEDS = [
    *(plain_containers(p) for p in range(6)),
    *(ordered_dict(p) for p in (0, 2, 5)),
    numpy_arrays(2),
    numpy_arrays(4),
    pickle.dumps([{f"k{j}": (j, float(j), f"s{j}")} for j in range(40)], protocol=4),
    pickle.dumps({"__doc__": "x", "__class__": [None, True, 1 << 70, b"b" * 300]}, protocol=2),
    pickle.dumps(["t" * 300, "é" * 20, (), (1,), (1, 2), (1, 2, 3), {1}], protocol=5),
    MALICIOUS["memo-stack-global"](),
    MALICIOUS["nested-in-state-dict"](),
    MALICIOUS["inst"](),
    MALICIOUS["build-dunder-on-allowed-global"](),
]

#: Opcodes `run` takes inline, with arguments, and a few it hands to `feed`.
_TEXT = st.sampled_from(["a", "__dict__", "__doc__", "os", "system", "x" * 20, "é"])
_OPCODE = st.one_of(
    st.sampled_from(list(b"\x94(su}e]a)\x85\x86\x87N\x88\x890\x312tldbR\x81\x93\x90\x92")).map(
        lambda c: bytes([c])
    ),
    st.integers(0, 255).map(lambda n: b"K" + bytes([n])),
    st.integers(0, 65535).map(lambda n: b"M" + struct.pack("<H", n)),
    st.integers(-(2**31), 2**31 - 1).map(lambda n: b"J" + struct.pack("<i", n)),
    st.floats(allow_nan=False).map(lambda f: b"G" + struct.pack(">d", f)),
    st.tuples(st.sampled_from([b"h", b"q"]), st.integers(0, 5)).map(lambda t: t[0] + bytes([t[1]])),
    st.tuples(st.sampled_from([b"j", b"r"]), st.integers(0, 5)).map(
        lambda t: t[0] + struct.pack("<I", t[1])
    ),
    _TEXT.map(lambda s: b"\x8c" + bytes([len(s.encode())]) + s.encode()),
    _TEXT.map(lambda s: b"X" + struct.pack("<I", len(s.encode())) + s.encode()),
    st.binary(max_size=4).map(lambda b: b"\x8c" + bytes([len(b)]) + b),  # maybe not UTF-8
    st.sampled_from([b"cos\nsystem\n", b"cbuiltins\ngetattr\n", b"\x8c\x09short", b"I01\n"]),
    st.integers(0, 64).map(lambda n: b"\x95" + struct.pack("<Q", n)),
)


class Trickle(io.RawIOBase):
    """Unseekable, and never more than a few bytes a read: every buffer boundary is met."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._at = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._data[self._at : self._at + min(len(buffer), self._step)]
        buffer[: len(chunk)] = chunk
        self._at += len(chunk)
        return len(chunk)


def _state(machine: PickleMachine) -> object:
    return (
        [vars(imported) for imported in machine.imports],
        machine.writes,
        machine.unresolved,
        machine.loaded,
        [g.offset for g in machine.methodcallers],
        machine.protocol,
        machine.deepest_marks,
        machine.too_deep_at,
        machine._held,
        None if machine.result is None else describe(machine.result),
        [describe(v) for v in machine.stack],
    )


def _damage(exc: PickleDamage | None) -> object:
    return exc and (exc.offset, exc.message, exc.rule_id, exc.truncated)


def _both(data: bytes, limits: Limits, step: int | None) -> tuple[object, object]:
    def source() -> ByteSource:
        stream = io.BytesIO(data) if step is None else Trickle(data, step)
        return ByteSource(stream, lambda: None, limits)

    fed = PickleMachine(default_policy(), limits.max_pickle_bytes)
    walked = source()
    count, damage, found = 0, None, []
    try:
        for offset, opcode, arg in iter_opcodes(walked, limits, lambda: None):
            if isinstance(arg, bytes | str) and len(arg) >= 3:
                found.append((arg, opcode.name, offset))
            count += 1
            fed.feed(offset, opcode, arg)
    except PickleDamage as exc:
        damage = exc
    expected = (_state(fed), count, _damage(damage), walked.offset, found)

    ran = PickleMachine(default_policy(), limits.max_pickle_bytes)
    run_source = source()
    damage, found = None, []
    try:
        ran.run(
            run_source,
            limits,
            lambda: None,
            found=lambda arg, name, offset: found.append((arg, name, offset)),
            found_min=3,
        )
    except PickleDamage as exc:
        damage = exc
    return expected, (_state(ran), ran.opcodes, _damage(damage), run_source.offset, found)


def _mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for at, cut, insert in edits:
        at %= len(out) + 1
        out[at : at + cut] = insert
    return bytes(out)


LIMITS = st.sampled_from([Limits(), Limits(max_pickle_bytes=2000), Limits(max_pickle_opcodes=30)])
EDIT = st.tuples(st.integers(0, 10**6), st.integers(0, 4), st.binary(max_size=4))
STEP = st.sampled_from([None, 1, 5, 9])
PER_EXAMPLE = settings(deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])


@PER_EXAMPLE
@given(st.lists(_OPCODE, max_size=80), LIMITS, STEP)
def test_run_is_feeding_every_opcode(ops: list[bytes], limits: Limits, step: int | None) -> None:
    expected, got = _both(b"\x80\x04" + b"".join(ops) + b".", limits, step)
    assert got == expected


@PER_EXAMPLE
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 4), st.binary(max_size=4)), max_size=3
    ),
    LIMITS,
    STEP,
)
def test_run_is_feeding_every_opcode_of_real_pickles(
    seed: bytes, edits: list[tuple[int, int, bytes]], limits: Limits, step: int | None
) -> None:
    expected, got = _both(_mutate(seed, edits), limits, step)
    assert got == expected


def test_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    limits = Limits()
    for data in (pickle.dumps([1, {"a": 2}]), b"\x80\x04K\x01s."):  # clean, then damage
        assert gc.isenabled()
        with contextlib.suppress(PickleDamage):
            PickleMachine(default_policy(), 10**6).run(
                ByteSource(io.BytesIO(data), lambda: None, limits), limits, lambda: None
            )
        assert gc.isenabled()
    gc.disable()
    try:
        PickleMachine(default_policy(), 10**6).run(
            ByteSource(io.BytesIO(b"N."), lambda: None, limits), limits, lambda: None
        )
        assert not gc.isenabled()
    finally:
        gc.enable()
