"""joblib reads its files in ways a linear pickle walk does not: each evasion is proved
against the real `joblib.load` with a harmless twin (a data marker), then its malicious
version (`os.system('true')`, never loaded here) must be flagged."""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path

import joblib
import numpy as np

import modelward
from fixtures.pickles import (
    BUILD,
    EMPTY_DICT,
    EMPTY_TUPLE,
    MARK,
    NEWFALSE,
    NEWOBJ,
    NEWTRUE,
    REDUCE,
    SETITEM,
    SETITEMS,
    STOP,
    TUPLE1,
    TUPLE3,
    Reduces,
    proto,
    stack_global,
    text,
)
from modelward.findings import Severity

MARKER = "modelward-marker"


def _worst(path: Path) -> Severity | None:
    return modelward.scan(path).results[0].max_severity


def _payload() -> bytes:
    """`os.system('true')` as protocol 4 opcodes leaving its result on the stack."""
    return stack_global("os", "system") + text("true") + TUPLE1 + REDUCE


def _marker() -> bytes:
    return text(MARKER)


# -- another spelling of the wrapper's name ----------------------------------------------------


def _respelled_dump(tmp_path: Path, value: object, name: str) -> Path:
    """A protocol 2 joblib dump whose wrapper is imported as `getattr(joblib.numpy_pickle, ...)`."""
    plain = tmp_path / f"{name}.plain.joblib"
    joblib.dump({"a": np.arange(3, dtype=np.int8), "b": value}, plain, protocol=2)
    data = plain.read_bytes()
    spelled = (
        b"cbuiltins\ngetattr\n"
        + b"cjoblib\nnumpy_pickle\n"
        + b"X"
        + struct.pack("<I", len(b"NumpyArrayWrapper"))
        + b"NumpyArrayWrapper\x86R"
    )
    data = data.replace(b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n", spelled, 1)
    assert spelled in data
    path = tmp_path / f"{name}.joblib"
    path.write_bytes(data)
    return path


def test_wrapper_spelled_through_getattr_is_still_read_as_joblib(tmp_path: Path) -> None:
    twin = _respelled_dump(tmp_path, MARKER, "twin")
    loaded = joblib.load(twin)
    assert loaded["b"] == MARKER and list(loaded["a"]) == [0, 1, 2]
    assert (_worst(twin) or Severity.INFO) < Severity.MEDIUM
    # The malicious version: the marker's opcode (protocol 2: BINUNICODE) becomes a call of
    # os.system, spliced in without pickling anything that could run.
    evil = _respelled_dump(tmp_path, MARKER, "evil")
    marker = b"X" + struct.pack("<I", len(MARKER)) + MARKER.encode()
    assert evil.read_bytes().count(marker) == 1
    evil.write_bytes(evil.read_bytes().replace(marker, _payload()))
    assert _worst(evil) is Severity.CRITICAL


# -- a FRAME that runs past the wrapper ----------------------------------------------------------


def _hand_dump(tail: bytes, data: bytes, *, framed: bool = True, aligned: bool = True) -> bytes:
    """`{"a": <int8 array of data>, "b": <tail>}` as joblib writes it, by hand.

    `framed`: one FRAME holding the wrapper, its BUILD and `tail`, the array bytes after
    the frame (joblib ends its frames before an array). `aligned`: the wrapper asks for a
    padding byte before the data (joblib >= 0.12); without it the data follows the BUILD.
    """
    dtype = (
        stack_global("numpy", "dtype")
        + text("i1")
        + NEWFALSE
        + NEWTRUE
        + TUPLE3
        + REDUCE
        + MARK
        + b"K\x03"
        + text("|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
        + BUILD
    )
    alignment = text("numpy_array_alignment_bytes") + b"K\x10" if aligned else b""
    state = (
        EMPTY_DICT
        + MARK
        + text("subclass")
        + stack_global("numpy", "ndarray")
        + text("shape")
        + b"K"
        + bytes([len(data)])
        + TUPLE1
        + text("order")
        + text("C")
        + text("dtype")
        + dtype
        + text("allow_mmap")
        + NEWFALSE
        + alignment
        + SETITEMS
    )
    head = (
        EMPTY_DICT
        + text("a")
        + stack_global("joblib.numpy_pickle", "NumpyArrayWrapper")
        + EMPTY_TUPLE
        + NEWOBJ
        + state
        + BUILD
    )
    rest = SETITEM + text("b") + tail + SETITEM + STOP
    array = (b"\x02\x00\x00" if aligned else b"") + data
    if framed:
        body = head + rest
        return proto(4) + b"\x95" + struct.pack("<Q", len(body)) + body + array
    return proto(4) + head + array + rest


def _framed_past_wrapper(tail: bytes) -> bytes:
    return _hand_dump(tail, bytes([1, 2, 3]))


def test_frame_running_past_the_wrapper_is_read_as_joblib_reads_it(tmp_path: Path) -> None:
    twin = tmp_path / "twin.joblib"
    twin.write_bytes(_framed_past_wrapper(_marker()))
    loaded = joblib.load(twin)
    assert loaded["b"] == MARKER and list(loaded["a"]) == [1, 2, 3]
    assert (_worst(twin) or Severity.INFO) < Severity.MEDIUM
    evil = tmp_path / "evil.joblib"
    evil.write_bytes(_framed_past_wrapper(_payload()))
    assert _worst(evil) is Severity.CRITICAL


# -- object dtypes spelled another way ------------------------------------------------------------


def _object_array_dump(tmp_path: Path, value: object, name: str) -> Path:
    plain = tmp_path / f"{name}.plain.joblib"
    joblib.dump(np.array([value, 1], dtype=object), plain, protocol=2)
    data = plain.read_bytes()
    spelled = b"X\x03\x00\x00\x00|O8"
    data, count = re.subn(rb"X\x02\x00\x00\x00O8", spelled, data, count=1)
    assert count == 1
    path = tmp_path / f"{name}.joblib"
    path.write_bytes(data)
    return path


def test_object_dtype_spelled_with_a_byte_order_is_a_nested_pickle(tmp_path: Path) -> None:
    twin = _object_array_dump(tmp_path, MARKER, "twin")
    assert list(joblib.load(twin)) == [MARKER, 1]
    assert (_worst(twin) or Severity.INFO) < Severity.MEDIUM
    evil = _object_array_dump(tmp_path, Reduces(print, ("x",)), "evil")
    data = evil.read_bytes()
    call = b"\x8c\x08builtins\x94\x8c\x05print"
    at = data.index(call)
    frame = data.rindex(b"\x95", 0, at)  # the nested pickle's FRAME: its length changes too
    (length,) = struct.unpack("<Q", data[frame + 1 : frame + 9])
    system = b"\x8c\x05posix\x94\x8c\x06system"
    length += len(system) - len(call)
    data = data[: frame + 1] + struct.pack("<Q", length) + data[frame + 9 :]
    evil.write_bytes(data.replace(call, system))
    assert _worst(evil) is Severity.CRITICAL


# -- legacy NDArrayWrapper: np.load(allow_pickle=True) of a path the pickle names -----------------


def _nd_wrapper(filename: str) -> bytes:
    return (
        proto(2)
        + b"cjoblib.numpy_pickle_compat\nNDArrayWrapper\n"
        + b")\x81}("
        + b"X\x08\x00\x00\x00filename"
        + b"X"
        + struct.pack("<I", len(filename.encode()))
        + filename.encode()
        + b"X\x08\x00\x00\x00subclass"
        + b"cnumpy\nndarray\n"
        + b"X\n\x00\x00\x00allow_mmap"
        + NEWFALSE
        + b"ub."
    )


def test_nd_array_wrapper_outside_the_dump_folder_is_critical(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    np.save(outside / "marker.npy", np.array([MARKER], dtype=object), allow_pickle=True)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    for name, filename in {
        "relative": "../elsewhere/marker.npy",
        "absolute": str(outside / "marker.npy"),
    }.items():
        path = dumps / f"{name}.pkl"
        path.write_bytes(_nd_wrapper(filename))
        assert list(joblib.load(path)) == [MARKER]  # the pickle chose which file np.load read
        findings = modelward.scan(path).results[0].findings
        assert any(
            f.rule_id == "MW-JOBLIB-EXTERNAL-ARRAY" and f.severity is Severity.CRITICAL
            for f in findings
        ), [(f.rule_id, f.severity) for f in findings]


def test_nd_array_wrapper_sibling_is_low(tmp_path: Path) -> None:
    np.save(tmp_path / "model.pkl_01.npy", np.arange(3))
    path = tmp_path / "model.pkl"
    path.write_bytes(_nd_wrapper("model.pkl_01.npy"))
    assert list(joblib.load(path)) == [0, 1, 2]
    findings = modelward.scan(path).results[0].findings
    assert [(f.rule_id, f.severity) for f in findings if f.severity > Severity.INFO] == [
        ("MW-JOBLIB-EXTERNAL-ARRAY", Severity.LOW)
    ]


def test_pickle_of_a_plain_marker_is_not_joblib() -> None:
    """The markers above are ordinary data to pickle too (a sanity check of the fixtures)."""
    assert pickle.loads(proto(4) + _marker() + STOP) == MARKER


# -- a wrapper first seen after the part detection looks at ---------------------------------------


def _late_wrapper_dump(tmp_path: Path, value: object, name: str) -> Path:
    """More than a MiB of ordinary data before the first array, as a big config or vocabulary."""
    path = tmp_path / f"{name}.joblib"
    vocabulary = [f"token-{i:07d}" for i in range(80_000)]
    joblib.dump({"vocab": vocabulary, "a": np.arange(3, dtype=np.int8), "b": value}, path)
    assert path.read_bytes().find(b"NumpyArrayWrapper") > 1024 * 1024
    return path


def test_wrapper_after_the_first_mib_is_read_as_joblib(tmp_path: Path) -> None:
    twin = _late_wrapper_dump(tmp_path, MARKER, "twin")
    assert joblib.load(twin)["b"] == MARKER
    findings = modelward.scan(twin).results[0].findings
    assert [f for f in findings if f.severity >= Severity.MEDIUM] == []
    evil = _late_wrapper_dump(tmp_path, Reduces(print, ("x",)), "evil")
    data = evil.read_bytes()
    call = b"\x8c\x08builtins\x94\x8c\x05print"
    assert data.count(call) == 1
    frame = data.rindex(b"\x95", 0, data.index(call))
    (length,) = struct.unpack("<Q", data[frame + 1 : frame + 9])
    system = b"\x8c\x05posix\x94\x8c\x06system"
    data = (
        data[: frame + 1] + struct.pack("<Q", length + len(system) - len(call)) + data[frame + 9 :]
    )
    evil.write_bytes(data.replace(call, system))
    assert _worst(evil) is Severity.CRITICAL


def test_payload_in_array_bytes_a_linear_loader_runs_is_caught(tmp_path: Path) -> None:
    """`pickle.load` reads on through the array bytes joblib takes for data: a payload there
    runs for it (and `joblib.load` returns it as an int8 array)."""
    twin_code = text(MARKER) + b"0"  # push a string, pop it: harmless to a linear loader
    twin = tmp_path / "twin.joblib"
    twin.write_bytes(_hand_dump(_marker(), twin_code, framed=False, aligned=False))
    assert bytes(joblib.load(twin)["a"].astype(np.uint8)) == twin_code
    assert pickle.loads(twin.read_bytes())["b"] == MARKER  # pickle.load read those bytes too
    assert (_worst(twin) or Severity.INFO) < Severity.MEDIUM
    payload = b"cos\nsystem\n(S'true'\ntR0"  # os.system('true'), its result popped
    evil = tmp_path / "evil.joblib"
    evil.write_bytes(_hand_dump(_marker(), payload, framed=False, aligned=False))
    findings = modelward.scan(evil).results[0].findings
    assert any(
        f.severity is Severity.CRITICAL and "system" in (f.evidence or "") for f in findings
    ), [(f.rule_id, f.severity, f.evidence) for f in findings]
