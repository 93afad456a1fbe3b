"""Pickles embedded as data inside a pickle (raw, base64, hex, zlib) are scanned too.

Each embedding is built with the real pickler at test time. Its harmless twin (inner
call `builtins.str('marker')`) is unpickled twice by the test: the outer pickle, then
the decoded inner one, proving the encoding round-trips to a pickle a loader runs. The
malicious version's inner pickle calls `os.system('true')` and is never loaded.
"""

from __future__ import annotations

import base64
import binascii
import os
import pickle
import tracemalloc
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from fixtures.pickles import reduce_pickle, scan_bytes
from modelward.config import ScanConfig
from modelward.findings import Finding, Severity
from modelward.formats.interface import ScanAborted
from modelward.pickle.embedded import MAX_EMBEDDED_BYTES

Encode = Callable[[bytes], object]

ENCODINGS: dict[str, tuple[Encode, Callable[[object], bytes]]] = {
    "raw": (lambda b: b, lambda v: v),  # type: ignore[dict-item]
    "base64": (lambda b: base64.b64encode(b).decode(), lambda v: base64.b64decode(v)),  # type: ignore[arg-type]
    "base64-bytes": (base64.b64encode, base64.b64decode),  # type: ignore[dict-item]
    "urlsafe-base64": (
        lambda b: base64.urlsafe_b64encode(b).decode(),
        lambda v: base64.urlsafe_b64decode(v),  # type: ignore[arg-type]
    ),
    "hex": (lambda b: b.hex(), lambda v: bytes.fromhex(v)),  # type: ignore[arg-type]
    "zlib": (zlib.compress, zlib.decompress),  # type: ignore[dict-item]
    "base64-zlib": (
        lambda b: base64.b64encode(zlib.compress(b)).decode(),
        lambda v: zlib.decompress(base64.b64decode(v)),  # type: ignore[arg-type]
    ),
}

#: How the evidence names each encoding (layers in the order they are peeled).
CHAIN = {
    "raw": "raw",
    "base64": "base64",
    "base64-bytes": "base64",
    "urlsafe-base64": "base64",
    "hex": "hex",
    "zlib": "zlib",
    "base64-zlib": "base64+zlib",
}


def embedded(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.rule_id == "MW-PICKLE-EMBEDDED"]


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("padding", [0, 300_000], ids=["kept", "long"])
def test_embedded_pickle_is_scanned(encoding: str, protocol: int, padding: int) -> None:
    encode, decode = ENCODINGS[encoding]
    arg = "x" * padding  # a long argument makes the payload one the walker skips
    twin = pickle.dumps({"cache": encode(reduce_pickle(str, ("marker" + arg,), protocol))})
    assert pickle.loads(decode(pickle.loads(twin)["cache"])) == "marker" + arg

    inner = reduce_pickle(os.system, ("true" + arg,), protocol)
    outer = pickle.dumps({"cache": encode(inner)}, protocol=4)
    findings = scan_bytes(outer)[1]
    [finding] = embedded(findings)
    assert finding.severity is Severity.MEDIUM
    assert "system" in (finding.evidence or "")
    assert (finding.evidence or "").startswith(CHAIN[encoding] + " in ")
    # The outer stream only holds data: nothing else is reported.
    assert [f for f in findings if f is not finding] == []


def test_nested_embedding_is_followed() -> None:
    inner = reduce_pickle(os.system, ("true",), 2)
    middle = pickle.dumps({"blob": base64.b64encode(inner).decode()}, protocol=2)
    outer = pickle.dumps([zlib.compress(middle)], protocol=4)
    [finding] = embedded(scan_bytes(outer)[1])
    assert "base64" in (finding.evidence or "") and "zlib" in (finding.evidence or "")


def test_nesting_stops_at_the_depth_limit() -> None:
    data = reduce_pickle(os.system, ("true",), 4)
    for _ in range(6):
        data = pickle.dumps({"blob": data}, protocol=4)
    assert embedded(scan_bytes(data)[1]) == []  # six levels down: not looked for


def test_benign_embedded_pickles_are_quiet() -> None:
    inner = pickle.dumps({"weights": [1.0, 2.0], "name": "layer"}, protocol=4)
    array = pickle.dumps(np.arange(1000, dtype=np.float32), protocol=4)
    outer = pickle.dumps(
        {"a": inner, "b": base64.b64encode(array).decode(), "c": zlib.compress(array)}, protocol=4
    )
    assert scan_bytes(outer)[1] == []


def test_allowed_calls_inside_are_quiet_dangerous_references_are_not() -> None:
    quiet = pickle.dumps([pickle.dumps(np.zeros(3), protocol=2)], protocol=4)
    assert embedded(scan_bytes(quiet)[1]) == []
    reference = pickle.dumps([pickle.dumps(os.system, protocol=2)], protocol=4)
    [finding] = embedded(scan_bytes(reference)[1])
    assert "referenced only" in (finding.evidence or "")


def test_tensor_payloads_are_peeked_not_read() -> None:
    payload = np.random.default_rng(0).bytes(64 * 1024 * 1024)
    data = pickle.dumps({"tensor": payload}, protocol=4)
    tracemalloc.start()
    try:
        findings = scan_bytes(data)[1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert findings == []
    assert peak < 8 * 1024 * 1024  # 64 MiB walked past, never held


def test_oversized_embedded_pickle_is_reported_unread() -> None:
    inner = reduce_pickle(os.system, ("x" * (2 * MAX_EMBEDDED_BYTES + 10),), 4)
    [finding] = embedded(scan_bytes(pickle.dumps([inner], protocol=4))[1])
    assert "not scanned" in finding.message


def test_zlib_output_is_charged_to_the_decompression_budget() -> None:
    inner = reduce_pickle(os.system, ("true" + "x" * 1_000_000,), 4)
    config = ScanConfig.from_mapping(
        {"scan": {"limits": {"max_total_decompressed_bytes": 100_000}}}
    )
    data = pickle.dumps([zlib.compress(inner)], protocol=4)
    with pytest.raises(ScanAborted) as aborted:  # the dispatcher turns it into the finding
        scan_bytes(data, config=config)
    assert aborted.value.rule_id == "MW-LIMIT-DECOMPRESSED"


def test_hex_of_binary_data_is_not_a_pickle() -> None:
    data = pickle.dumps({"digest": binascii.hexlify(os.urandom(64)).decode()}, protocol=4)
    assert scan_bytes(data)[1] == []
