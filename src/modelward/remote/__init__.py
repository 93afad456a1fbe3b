"""Scan before you download: Hugging Face repositories and URLs, read by HTTP range requests.

`modelward scan hf://ORG/REPO[@REVISION][/PATH]` and `modelward scan https://...` run the same
scanners as on local files, through a seekable stream whose reads are range requests
(`remote.http`), so a checkpoint's pickle is read without its tensors. Names resolve on first
use, so telling a remote target from a path imports neither the scanners nor httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "HttpSettings": "modelward.remote.http",
    "RemoteError": "modelward.remote.http",
    "scan_remote": "modelward.remote.scan",
    "is_remote": "modelward.remote.sources",
    "redact": "modelward.remote.sources",
}

if TYPE_CHECKING:
    from modelward.remote.http import HttpSettings, RemoteError
    from modelward.remote.scan import scan_remote
    from modelward.remote.sources import is_remote, redact


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelward.remote' has no attribute {name!r}")


__all__ = ["HttpSettings", "RemoteError", "is_remote", "redact", "scan_remote"]
