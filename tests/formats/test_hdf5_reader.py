"""The pure-Python HDF5 attribute reader: every layout h5py writes, read as h5py reads it,
and hostile bytes bounded: `Hdf5Error` is the only exception, reads and time are capped."""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path

import h5py
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures import hdf5_files as hf
from modelward.formats._hdf5_reader import (
    MAX_DEPTH,
    Hdf5Error,
    RootAttributes,
    _Reader,
    lookup3,
    read_root_attributes,
)

KEYS = ("model_config", "training_config")


def read(data: bytes, limit: int = 10**8, base: int = 0) -> RootAttributes:
    return read_root_attributes(io.BytesIO(data), len(data), base, KEYS, limit, lambda: None)


def h5py_view(path: Path) -> dict[str, str]:
    """What Keras gets from h5py for the config attributes."""
    with h5py.File(path, "r") as f:
        values = {key: f.attrs[key] for key in KEYS if key in f.attrs}
    return {
        k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in values.items()
    }


def test_lookup3_matches_the_reference_vectors() -> None:
    # Bob Jenkins' lookup3.c driver: hashlittle("", 0, 0) and "Four score..." with 0.
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551


def test_every_layout_reads_as_h5py_reads_it(tmp_path: Path) -> None:
    config = hf.config_json(layers=200)
    big = hf.config_json(layers=3000)  # about 200 KB
    files = [
        hf.keras2_fixed_bytes(tmp_path / "fixed.h5", config),
        hf.keras2_fixed_bytes(tmp_path / "huge.h5", big, libver="latest"),
        hf.dense_attributes(tmp_path / "dense.h5", config),
        hf.dense_attributes(tmp_path / "dense_huge.h5", big),
        hf.committed_string_type(tmp_path / "committed.h5", config),
    ]
    with h5py.File(tmp_path / "vlen.h5", "w", userblock_size=512) as f:
        f.attrs["model_config"] = big
        f.attrs["training_config"] = '{"loss": "mse"}'
    files.append(tmp_path / "vlen.h5")
    for path in files:
        data = path.read_bytes()
        base = 512 if path.name == "vlen.h5" else 0
        assert read(data, base=base).texts == h5py_view(path), path.name


def test_dense_config_with_embedded_nul_keeps_what_h5py_keeps(tmp_path: Path) -> None:
    # h5py writes bytes null-padded: numpy drops only trailing NULs.
    path = hf.keras2_fixed_bytes(tmp_path / "nul.h5", '{"a": 1}\x00tail')
    assert read(path.read_bytes()).texts == h5py_view(path) == {"model_config": '{"a": 1}\x00tail'}


def test_reads_stop_at_the_deadline(tmp_path: Path) -> None:
    data = hf.dense_attributes(tmp_path / "dense.h5", hf.config_json()).read_bytes()

    class Late(Exception):
        pass

    def tick() -> None:
        raise Late

    with pytest.raises(Late):
        read_root_attributes(io.BytesIO(data), len(data), 0, KEYS, 10**8, tick)


def test_btree_deeper_than_the_bound_is_refused(tmp_path: Path) -> None:
    data = hf.dense_attributes(tmp_path / "dense.h5", hf.config_json()).read_bytes()
    deep = hf.reseal(data, b"BTHD", 34, {12: (MAX_DEPTH + 1).to_bytes(2, "little")})
    with pytest.raises(Hdf5Error, match="depth"):
        read(deep)


def test_huge_global_heap_length_is_reported_by_size(tmp_path: Path) -> None:
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = "{}"
    data = bytearray(path.read_bytes())
    # The stored element: length 2 ("{}"), the global heap collection's address, an index.
    at = data.index(struct.pack("<IQ", 2, data.index(b"GCOL")))
    data[at : at + 4] = (2**31).to_bytes(4, "little")
    assert read(bytes(data), limit=10**6).oversize == {"model_config": 2**31}


# --- fuzzing -------------------------------------------------------------------------------

_SEEDS: dict[str, bytes] = {}


def seeds(tmp: Path) -> dict[str, bytes]:
    if not _SEEDS:
        config = hf.config_json(layers=5)
        _SEEDS["vlen"] = hf.keras2_fixed_bytes(tmp / "a.h5", config).read_bytes()
        _SEEDS["dense"] = hf.dense_attributes(tmp / "b.h5", config, others=12).read_bytes()
        _SEEDS["committed"] = hf.committed_string_type(tmp / "c.h5", config).read_bytes()
        with h5py.File(tmp / "d.h5", "w", libver="latest") as f:
            f.attrs["model_config"] = config
        _SEEDS["latest"] = (tmp / "d.h5").read_bytes()
    return _SEEDS


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """`seed`, truncated or not, with a few byte runs overwritten (often all ones)."""
    data = bytearray(seed[: draw(st.integers(1, len(seed)))] if draw(st.booleans()) else seed)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        run = draw(st.binary(min_size=1, max_size=8) | st.just(b"\xff" * 8))
        data[at : at + len(run)] = run
    return bytes(data)


@settings(max_examples=150)
@given(kind=st.sampled_from(["vlen", "dense", "committed", "latest"]), data=st.data())
def test_mutated_files_raise_only_hdf5_error_and_stay_bounded(
    tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject
) -> None:
    blob = data.draw(mutated(seeds(tmp_path_factory.mktemp("seed"))[kind]))
    ticks = [0]

    def tick() -> None:
        ticks[0] += 1

    reader = _Reader(io.BytesIO(blob), len(blob), 0, 10**6, tick)
    started = time.monotonic()
    try:
        found = reader.root_attributes(KEYS)  # no safety net: decoders must check bounds
    except Hdf5Error:
        pass
    else:
        assert all(isinstance(v, str) for v in found.texts.values())
        json.dumps(found.oversize)
    assert time.monotonic() - started < 2.0
    assert reader.used <= reader.budget and ticks[0] < 10_000
