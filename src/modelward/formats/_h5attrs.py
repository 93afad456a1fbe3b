"""Runs in a child process for `hdf5`: read the Keras config attributes of one HDF5 file.

The HDF5 C library has crashed on crafted files before; running it in a child keeps
a hostile `.h5` from taking the whole scan down with it. The parent gives the size
limit and a path (or the bytes) and reads one JSON object back:
`{"status": "ok", "attributes": {name: text}, "oversize": {name: bytes}, "not_text": [name]}`,
`{"status": "no-h5py"}` or `{"status": "error", "error": "..."}`. Datasets are never read.
"""

from __future__ import annotations

import io
from typing import Any

KERAS_CONFIG_ATTRIBUTES = ("model_config", "training_config")


def read_attributes(source: str | io.BytesIO, limit: int) -> dict[str, Any]:
    try:
        import h5py
    except ImportError:
        return {"status": "no-h5py"}
    attributes: dict[str, str] = {}
    oversize: dict[str, int] = {}
    not_text: list[str] = []
    try:
        with h5py.File(source, "r") as f:
            for key in KERAS_CONFIG_ATTRIBUTES:
                if key not in f.attrs:
                    continue
                size = h5py.h5a.open(f.id, key.encode()).get_storage_size()
                if size > limit:
                    oversize[key] = int(size)
                    continue
                value = f.attrs[key]
                if isinstance(value, bytes):
                    value = value.decode("utf-8", errors="replace")
                if isinstance(value, str):
                    attributes[key] = value
                else:
                    not_text.append(key)
    except Exception as exc:  # whatever h5py raises on a broken file is a finding
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": "ok", "attributes": attributes, "oversize": oversize, "not_text": not_text}
