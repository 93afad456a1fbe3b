"""Structure-level fuzz target: modelward and torch.load agree on which pickle is read.

The seeds are benign checkpoints (a zip with ZIP64 records, a legacy tar) whose only
pickle imports `mw_probe.Marker`, a module that does not exist: whenever the real
`torch.load(weights_only=False)` fails with ModuleNotFoundError for `mw_probe`, it has
unpickled that member, and modelward must then report `mw_probe.Marker`. Hypothesis
mutates container metadata (end record, ZIP64 record and locator, central and local
headers, names, tar headers); any file torch reads the probe from and modelward does not
is a failing example that Hypothesis shrinks. torch runs in a worker process with a
timeout per file. `HYPOTHESIS_PROFILE=long` runs it much longer (docs/fuzzing.md).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import modelward
from fixtures.containers import (
    PROBE,
    build_zip,
    legacy_tar_checkpoint,
    probe_pickle,
    torch_entries,
)

_EXAMPLES = int(
    os.environ.get(
        "MW_FUZZ_EXAMPLES", 5000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 25
    )
)
_LOAD_TIMEOUT = 30

_WORKER = """
import sys, warnings
warnings.simplefilter("ignore")
import torch
for line in sys.stdin:
    try:
        torch.load(line.strip(), weights_only=False)
        out = "loaded"
    except ModuleNotFoundError as exc:
        out = "probe" if "mw_probe" in str(exc) else "other"
    except BaseException:
        out = "other"
    print(out, flush=True)
"""


class TorchLoader:
    """`torch.load` in a worker process, restarted when a file hangs or crashes it."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        return self._proc

    def unpickles_probe(self, path: Path) -> bool:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{path}\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            return False
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(_LOAD_TIMEOUT):
                self.close()
                return False
        answer = proc.stdout.readline().strip()
        if not answer:
            self.close()
        return answer == "probe"

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


@pytest.fixture(scope="module")
def loader() -> Iterator[TorchLoader]:
    worker = TorchLoader()
    yield worker
    worker.close()


def _fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every metadata field of the zip seed: end record, ZIP64 record
    and locator, central and local headers, names."""
    out: list[tuple[int, int]] = []
    eocd = data.rfind(b"PK\x05\x06")
    out += [(eocd + o, w) for o, w in ((4, 2), (6, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2))]
    loc = data.rfind(b"PK\x06\x07")
    out += [(loc + o, w) for o, w in ((4, 4), (8, 8), (16, 4))]
    rec = data.rfind(b"PK\x06\x06")
    out += [(rec + o, w) for o, w in ((4, 8), (16, 4), (20, 4), (24, 8), (32, 8), (40, 8), (48, 8))]
    pos = data.find(b"PK\x01\x02")
    while 0 <= pos < eocd:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        out += [(pos + o, w) for o, w in ((8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2))]
        out += [(pos + o, w) for o, w in ((30, 2), (34, 2), (42, 4))]
        out += [(pos + 46 + i, 1) for i in range(name_len)]
        pos = data.find(b"PK\x01\x02", pos + 46)
    pos = data.find(b"PK\x03\x04")
    while pos >= 0:
        name_len = struct.unpack_from("<H", data, pos + 26)[0]
        out += [(pos + o, w) for o, w in ((6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2))]
        out += [(pos + 30 + i, 1) for i in range(name_len)]
        pos = data.find(b"PK\x03\x04", pos + 30)
    return out


ZIP_SEED = build_zip(torch_entries(probe_pickle()), zip64=True)
ZIP_FIELDS = _fields(ZIP_SEED)


def _tar_seed() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = legacy_tar_checkpoint(Path(folder) / "seed.tar", storage_views=probe_pickle())
        return path.read_bytes()


TAR_SEED = _tar_seed()
#: Header fields of the first records: name, mode, size, checksum, type, magic, prefix.
TAR_FIELDS = [
    (header + o, w)
    for header in range(0, min(len(TAR_SEED), 512 * 12), 512)
    for o, w in ((0, 12), (100, 8), (124, 12), (148, 8), (156, 1), (257, 6), (345, 12))
]


def _value(width: int, choice: int, raw: int) -> bytes:
    top = (1 << (8 * width)) - 1
    value = [0, top, raw & top, (raw % 64), top - (raw % 64)][choice]
    return value.to_bytes(width, "little")


def _apply(seed: bytes, fields: list[tuple[int, int]], edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(seed)
    for index, choice, raw in edits:
        offset, width = fields[index % len(fields)]
        data[offset : offset + width] = _value(width, choice, raw)
    return bytes(data)


_EDITS = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 4), st.integers(0, 2**64 - 1)),
    min_size=1,
    max_size=3,
)


def _check(path: Path, loader: TorchLoader, *, in_hypothesis: bool = True) -> None:
    reached = loader.unpickles_probe(path)
    if in_hypothesis:
        event("torch unpickled the probe" if reached else "torch did not reach the probe")
    if not reached:
        return
    result = modelward.scan(path).results[0]
    seen = " ".join(f"{f.message} {f.evidence or ''}" for f in result.findings)
    assert PROBE in seen, (result.format, result.findings)


@settings(max_examples=_EXAMPLES)
@given(edits=_EDITS, tail=st.sampled_from([b"", b"PK\x05\x06", b"\x00" * 22]))
def test_zip_metadata_mutations(
    loader: TorchLoader, edits: list[tuple[int, int, int]], tail: bytes
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.pt"
        path.write_bytes(_apply(ZIP_SEED, ZIP_FIELDS, edits) + tail)
        _check(path, loader)


@settings(max_examples=_EXAMPLES)
@given(edits=_EDITS)
def test_tar_header_mutations(loader: TorchLoader, edits: list[tuple[int, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.tar"
        path.write_bytes(_apply(TAR_SEED, TAR_FIELDS, edits))
        _check(path, loader)


def test_seeds_reach_the_probe(loader: TorchLoader, tmp_path: Path) -> None:
    for name, seed in (("z.pt", ZIP_SEED), ("t.tar", TAR_SEED)):
        path = tmp_path / name
        path.write_bytes(seed)
        assert loader.unpickles_probe(path), name
        _check(path, loader, in_hypothesis=False)
