"""Hypothesis fuzz targets for the archive scanners and the model-folder checks.

The oracle is the same for every target: whatever the bytes, scanning ends
with findings, never an exception out of the scanner (`MW-SCAN-ERROR` is the
dispatcher catching one) and never a hang. Inputs start from real archives and
are then cut and overwritten, which reaches deeper than random bytes would.
`HYPOTHESIS_PROFILE=long` (or `python bench/fuzz.py`) runs them much longer.
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.archives import COMPRESSORS, TarEntry, malicious_pickle, tar_bytes
from modelward.config import Limits, ScanConfig
from modelward.findings import Location, ScanResult
from modelward.formats import tar
from modelward.formats.hf_folder import FOLDER_FORMAT, auto_map_references, scan_model_folder
from modelward.formats.interface import Blob, ScanContext
from modelward.scanner import dispatch

#: Small limits so that a mutation that inflates something hits them quickly.
FUZZ_CONFIG = ScanConfig(
    limits=Limits(max_seconds_per_file=5, max_decompressed_bytes=8 * 1024**2, max_members=200)
)

SEED_TAR = tar_bytes(
    [
        TarEntry("model/config.json", b'{"a": 1}'),
        TarEntry("model/data.pkl", malicious_pickle()),
        TarEntry("model/link", kind=tarfile.SYMTYPE, linkname="../x"),
        TarEntry("p" * 120 + "/long-name.bin", b"\x00" * 700),
    ]
)
SEEDS = {
    "tar": SEED_TAR,
    "tar-gnu": tar_bytes([TarEntry("g" * 150, b"abc")], tarfile.GNU_FORMAT),
    **{name: compress(SEED_TAR) for name, compress in COMPRESSORS.items()},
}


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """`seed`, truncated or not, with a few byte runs overwritten."""
    data = bytearray(seed[: draw(st.integers(1, len(seed)))] if draw(st.booleans()) else seed)
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at : at + 4] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def scan_bytes(data: bytes, name: str = "fuzz.bin") -> ScanResult:
    result = ScanResult(name)
    ctx = ScanContext(config=FUZZ_CONFIG, result=result, dispatch=dispatch, deadline=float("inf"))
    result.format = dispatch(Blob.from_bytes(Location(name), data), ctx)
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}, result.findings
    return result


@given(st.sampled_from(sorted(SEEDS)).flatmap(lambda kind: mutated(SEEDS[kind])))
def test_mutated_archives_only_produce_findings(data: bytes) -> None:
    scan_bytes(data)


@given(st.binary(min_size=512, max_size=2048))
def test_tar_detection_never_raises(head: bytes) -> None:
    blob = Blob.from_bytes(Location("x"), head)
    assert tar.TAR.detect(blob, head) in (True, False)


_SEGMENT = st.sampled_from(["a", "b", ".", "..", "", "c.d", "..."])


@given(st.lists(_SEGMENT, min_size=1, max_size=8), st.booleans())
def test_member_path_escape_matches_resolving_under_root(parts: list[str], absolute: bool) -> None:
    name = ("/" if absolute else "") + "/".join(parts)
    root = "/extract/here"
    resolved = posixpath.normpath(posixpath.join(root, name))
    inside = resolved == root or resolved.startswith(root + "/")
    assert tar.member_path_escapes(name) is (absolute or not inside)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_AUTO_MAP_VALUE = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=3),
    _JSON,
)


@given(_JSON)
def test_auto_map_references_only_returns_text(auto_map: object) -> None:
    assert all(isinstance(ref, str) and ref for ref in auto_map_references(auto_map))


@given(
    auto_map=st.dictionaries(st.text(max_size=12), _AUTO_MAP_VALUE, max_size=4) | _JSON,
    template=st.one_of(st.none(), st.text(max_size=80), _JSON),
    raw_config=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_folder_checks_only_produce_findings(
    tmp_path_factory: pytest.TempPathFactory,
    auto_map: object,
    template: object,
    raw_config: bytes | None,
) -> None:
    folder = tmp_path_factory.mktemp("hf")
    config = folder / "config.json"
    if raw_config is None:
        config.write_text(json.dumps({"model_type": "x", "auto_map": auto_map}), encoding="utf-8")
    else:
        config.write_bytes(raw_config)
    tokenizer = folder / "tokenizer_config.json"
    tokenizer.write_text(json.dumps({"chat_template": template}), encoding="utf-8")
    os.symlink("../../elsewhere", folder / "weights.safetensors")
    result = scan_model_folder(folder, [config, tokenizer], FUZZ_CONFIG)
    assert result.format == FOLDER_FORMAT
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}, result.findings
    assert "MW-HF-SYMLINK-ESCAPE" in {f.rule_id for f in result.findings}
