"""One module per model format, each behind the `FormatScanner` interface in `base`.

`SCANNERS` is the detection order: the first scanner whose `detect` accepts a
blob's bytes scans it. More specific formats come before the generic ones they
are built on (a PyTorch zip before a plain zip, NumPy before raw pickle).
"""

from __future__ import annotations

from modelward.formats import (
    archive,
    gguf,
    hdf5,
    joblib,
    keras,
    numpy,
    onnx,
    pickle,
    pt2,
    python_source,
    pytorch,
    safetensors,
    savedmodel,
    sevenzip,
    torchscript,
    zip,
)
from modelward.formats.base import FormatScanner

SCANNERS: list[FormatScanner] = [
    safetensors.SAFETENSORS,
    gguf.GGUF,
    # A tar header (valid checksum) before formats that sniff past offset 0 (HDF5 at 512,
    # a zip's end), which would otherwise claim a tar whose first or last member is one.
    # torch's legacy tar checkpoint first: it is a tar, scanned as one and then as torch reads it.
    pytorch.PYTORCH_TAR,
    archive.TAR,
    hdf5.HDF5,
    # Zip-based formats before PyTorch's zip and the generic zip they are built on.
    torchscript.TORCHSCRIPT,
    keras.KERAS,
    savedmodel.SAVED_MODEL,
    savedmodel.KERAS_METADATA,
    savedmodel.FINGERPRINT,
    # PyTorch and NumPy zips, then any other zip (found at its end too: a prefixed zip).
    pytorch.PYTORCH_ZIP,
    # torch.export archives: after the PyTorch zip, so one that also holds a data.pkl (which
    # torch.load would run) is scanned as the checkpoint torch.load sees.
    pt2.PT2,
    numpy.NPZ,
    zip.ZIP,
    # Pickle-based formats before raw pickle, joblib's compressed files before gzip & co.
    numpy.NPY,
    joblib.JOBLIB,
    # joblib < 0.10 `ZF` array files: after joblib, which claims a `ZF` file holding a pickle.
    numpy.ZFILE_ARRAY,
    pytorch.PYTORCH_LEGACY,
    # ONNX has no magic, only a protobuf sniff: keep it after other protobuf formats.
    onnx.ONNX,
    # Generic compressed streams last: their content is dispatched again by its bytes.
    archive.GZIP,
    archive.BZIP2,
    archive.XZ,
    sevenzip.SEVEN_ZIP,
    # Raw pickle after the formats that embed pickles (NumPy, joblib, PyTorch).
    pickle.PICKLE,
    # By name as well as bytes (source has no magic), so after every content match.
    python_source.PYTHON_SOURCE,
    # Checkpoint shards have no magic: named data, only when nothing above claims the bytes.
    savedmodel.CHECKPOINT,
]
