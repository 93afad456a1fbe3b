"""One module per model format, each behind the `FormatScanner` interface in `interface`
(stream helpers private beside it, in `_streams`).

`SCANNERS` is the detection order: the first scanner whose `detect` accepts a
blob's bytes scans it. More specific formats come before the generic ones they
are built on (a PyTorch zip before a plain zip, NumPy before raw pickle).

A scanner's module is imported the first time a blob could be its format: each entry
names the module and a cheap test on the head (`_magic`) that is true for every blob the
scanner would accept. A folder of pickles never imports the ONNX, HDF5, tar or decompression code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, cast

from modelward.formats import _magic
from modelward.formats.interface import Blob, FormatScanner
from modelward.pickle.sniff import looks_like_pickle

if TYPE_CHECKING:
    from modelward.formats.interface import ScanContext

#: A cheap necessary condition for a format: False only when the scanner would say no.
CouldBe = Callable[[Blob, bytes], bool]


class LazyScanner:
    """A `FormatScanner` whose module is imported when a blob first passes `could_be`."""

    def __init__(self, name: str, target: str, could_be: CouldBe | None = None) -> None:
        self.name = name
        #: `module:attribute` of the scanner object.
        self.target = target
        self.could_be = could_be

    def __repr__(self) -> str:
        return f"LazyScanner({self.name!r}, {self.target!r})"

    @cached_property
    def scanner(self) -> FormatScanner:
        module, _, attribute = self.target.partition(":")
        found = getattr(importlib.import_module(f"modelward.formats.{module}"), attribute)
        return cast(FormatScanner, found)

    def detect(self, blob: Blob, head: bytes) -> bool:
        if self.could_be is not None and not self.could_be(blob, head):
            return False
        return self.scanner.detect(blob, head)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        self.scanner.scan(blob, ctx)


def _base_name(blob: Blob) -> str:
    return blob.name.replace("\\", "/").rsplit("/", 1)[-1]


def _prefix(*prefixes: bytes) -> CouldBe:
    return lambda _blob, head: head.startswith(prefixes)


def _tar(_blob: Blob, head: bytes) -> bool:
    return len(head) >= 512 and _magic.tar_header_ok(head)


def _hdf5(blob: Blob, head: bytes) -> bool:
    return _magic.hdf5_signature_offset(blob, head) is not None


def _joblib(_blob: Blob, head: bytes) -> bool:
    return _magic.compression(head) is not None or looks_like_pickle(head)


def _torch_legacy(_blob: Blob, head: bytes) -> bool:
    # The magic number torch.save writes first: a pickled long, opcode LONG1 of 10 bytes.
    return head.startswith(b"\x80") and b"\x8a\x0a" in head[:32]


def _saved_model(blob: Blob, head: bytes) -> bool:
    name = _base_name(blob)
    return name.startswith("saved_model.pb") or head.startswith(b"\x08\x01\x12")


def _fingerprint(blob: Blob, _head: bytes) -> bool:
    return _base_name(blob) == "fingerprint.pb"


def _checkpoint(blob: Blob, _head: bytes) -> bool:
    name = _base_name(blob)
    return name.endswith(".index") or ".data-" in name


def _python_source(blob: Blob, _head: bytes) -> bool:
    return blob.name.lower().endswith(".py")


_ZIP = _magic.could_be_zip


def _zip_naming(needle: str) -> CouldBe:
    """A zip with a member whose name holds `needle` (any case): TorchScript, Keras and
    `torch.export` zips are told from a plain checkpoint by a member, and their scanners'
    modules (code analysis, Keras configs) are not worth importing for every zip."""

    def could_be(blob: Blob, head: bytes) -> bool:
        if not _magic.could_be_zip(blob, head):
            return False
        from modelward.formats.zip import zip_member_names

        names = zip_member_names(blob, head)
        return names is not None and any(needle in name.lower() for name in names)

    return could_be


SCANNERS: list[FormatScanner] = [
    LazyScanner("safetensors", "safetensors:SAFETENSORS", lambda _b, head: head[8:9] == b"{"),
    LazyScanner("gguf", "gguf:GGUF", _prefix(b"GGUF")),
    # A tar header (valid checksum) before formats that sniff past offset 0 (HDF5 at 512,
    # a zip's end), which would otherwise claim a tar whose first or last member is one.
    # torch's legacy tar checkpoint first: it is a tar, scanned as one and then as torch reads it.
    LazyScanner("pytorch-tar", "pytorch_tar:PYTORCH_TAR", _tar),
    LazyScanner("tar", "tar:TAR", _tar),
    LazyScanner("hdf5", "hdf5:HDF5", _hdf5),
    # Zip-based formats before PyTorch's zip and the generic zip they are built on.
    LazyScanner("torchscript", "torchscript:TORCHSCRIPT", _zip_naming("constants.pkl")),
    LazyScanner("keras", "keras:KERAS", _zip_naming("config.json")),
    LazyScanner("tf-savedmodel", "savedmodel:SAVED_MODEL", _saved_model),
    LazyScanner("keras-metadata", "savedmodel:KERAS_METADATA", _prefix(b"\x0a")),
    LazyScanner("tf-fingerprint", "savedmodel:FINGERPRINT", _fingerprint),
    # PyTorch and NumPy zips, then any other zip (found at its end too: a prefixed zip).
    LazyScanner("pytorch-zip", "pytorch:PYTORCH_ZIP", _ZIP),
    # torch.export archives: after the PyTorch zip, so one that also holds a data.pkl (which
    # torch.load would run) is scanned as the checkpoint torch.load sees.
    LazyScanner("pt2", "pt2:PT2", _zip_naming("archive_format")),
    LazyScanner("npz", "npz:NPZ", _ZIP),
    LazyScanner("zip", "zip:ZIP", _ZIP),
    # Pickle-based formats before raw pickle, joblib's compressed files before gzip & co.
    LazyScanner("numpy", "numpy:NPY", _prefix(b"\x93NUMPY")),
    LazyScanner("joblib", "joblib:JOBLIB", _joblib),
    # joblib < 0.10 `ZF` array files: after joblib, which claims a `ZF` file holding a pickle.
    LazyScanner("joblib-zfile", "numpy:ZFILE_ARRAY", _prefix(b"ZF")),
    LazyScanner("pytorch-legacy", "pytorch:PYTORCH_LEGACY", _torch_legacy),
    # ONNX has no magic, only a protobuf sniff (`ir_version`, field 1, first): keep it after
    # other protobuf formats.
    LazyScanner("onnx", "onnx:ONNX", _prefix(b"\x08")),
    # Generic compressed streams last: their content is dispatched again by its bytes.
    LazyScanner("gzip", "compressed:GZIP", lambda _b, head: _magic.gzip_magic(head)),
    LazyScanner("bzip2", "compressed:BZIP2", lambda _b, head: _magic.bzip2_magic(head)),
    LazyScanner("xz", "compressed:XZ", lambda _b, head: _magic.xz_magic(head)),
    LazyScanner("7z", "sevenzip:SEVEN_ZIP", _prefix(b"7z\xbc\xaf\x27\x1c")),
    # Raw pickle after the formats that embed pickles (NumPy, joblib, PyTorch).
    LazyScanner("pickle", "pickle:PICKLE"),
    # By name as well as bytes (source has no magic), so after every content match.
    LazyScanner("python-source", "python_source:PYTHON_SOURCE", _python_source),
    # Checkpoint shards have no magic: named data, only when nothing above claims the bytes.
    LazyScanner("tf-checkpoint", "savedmodel:CHECKPOINT", _checkpoint),
]
