"""Scan before you download: Hugging Face repositories and URLs, read by HTTP range requests.

`modelward scan hf://ORG/REPO[@REVISION][/PATH]` and `modelward scan https://...` run the same
scanners as on local files, through a seekable stream whose reads are range requests
(`remote.http`), so a checkpoint's pickle is read without its tensors. Names resolve on first
use, so telling a remote target from a path imports neither the scanners nor httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelward._lazy import lazy_exports

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


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all __getattr__
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = ["HttpSettings", "RemoteError", "is_remote", "redact", "scan_remote"]
