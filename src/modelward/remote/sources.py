"""What a remote target names: the files of a Hugging Face repository at one commit, or a URL.

`hf://ORG/REPO[@REVISION][/PATH]` is resolved once, through `huggingface_hub` (which honours
`HF_ENDPOINT` and `HF_TOKEN`), to a commit and its file listing with sizes and, for LFS files,
SHA-256 digests. Every file is then read from that commit, so a branch that moves during the
scan cannot mix two revisions. `http(s)://` names one file; `s3://` and `gs://` name an
object or a prefix (`remote.objects`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

from modelward.remote.http import HttpSettings, ReadClient, RemoteError, first_line

#: Files one target may list before the listing stops with an error (a hostile listing is
#: bounded like a hostile archive).
MAX_LISTED_FILES = 100_000

#: Prefixes of the targets `scan` reads remotely.
REMOTE_PREFIXES = ("hf://", "http://", "https://", "s3://", "gs://")

_HF_TARGET = re.compile(
    r"hf://(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/@\s]+/[^/@\s]+)"
    r"(?:@(?P<revision>[^/\s]+))?(?:/(?P<path>.*))?"
)
#: `hf://datasets/...` and `hf://spaces/...` name those repository types (huggingface_hub's
#: own URI convention); anything else is a model.
_REPO_TYPES = {"datasets": "dataset", "spaces": "space", None: "model"}


def is_remote(target: str) -> bool:
    """Whether `target` names a remote file or repository rather than a local path."""
    return target.startswith(REMOTE_PREFIXES)


@dataclass(frozen=True)
class RemoteFile:
    """One file to read: where from, how to show it, and what the listing says of it."""

    url: str
    shown: str  # the location in reports: no credentials
    path: str  # relative to the target's root (the repository, or the URL's file name)
    size: int | None = None
    sha256: str | None = None  # when the source states it (Hub LFS files)


@dataclass
class RemoteSource:
    """A resolved target: its files, and the headers its reads need (credentials included)."""

    target: str
    shown: str  # the root in reports: `hf://org/repo@<commit>` or the URL
    files: list[RemoteFile]
    commit: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    #: The client its files are read through; None: an HTTP `RangeClient` with `headers`.
    client: Callable[[HttpSettings], ReadClient] | None = field(default=None, repr=False)


def resolve(
    target: str, timeout: float = 30.0, settings: HttpSettings | None = None
) -> RemoteSource:
    """List what `target` names; raises `RemoteError` (exit 2) when that cannot be done."""
    if target.startswith(("s3://", "gs://")):
        from modelward.remote.objects import resolve_objects

        return resolve_objects(target, settings or HttpSettings(read_timeout=timeout))
    if target.startswith("hf://"):
        return _resolve_hub(target, timeout)
    return _resolve_url(target)


def hub_endpoint() -> str:
    """The Hub `HF_ENDPOINT` names now (huggingface_hub reads it only once, at import)."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def _resolve_hub(target: str, timeout: float) -> RemoteSource:
    from huggingface_hub import HfApi, get_token, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils._headers import build_hf_headers

    match = _HF_TARGET.fullmatch(target)
    if match is None:
        raise RemoteError(f"{target}: not hf://[datasets/|spaces/]ORG/REPO[@REVISION][/PATH]")
    repo, revision, prefix = match["repo"], match["revision"] or "main", match["path"] or ""
    repo_type = _REPO_TYPES[match["kind"]]
    endpoint, token = hub_endpoint(), get_token()
    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.repo_info(repo, repo_type=repo_type, revision=revision, timeout=timeout)
        commit = info.sha
        if not commit:
            raise RemoteError(f"{target}: the Hub named no commit for revision {revision!r}")
        entries = []
        for count, entry in enumerate(
            api.list_repo_tree(repo, repo_type=repo_type, revision=commit, recursive=True)
        ):
            if count >= MAX_LISTED_FILES:
                raise RemoteError(
                    f"{target}: more than {MAX_LISTED_FILES} entries in the listing;"
                    " scan a narrower /PATH"
                )
            if isinstance(entry, RepoFile) and (
                not prefix
                or entry.path == prefix
                or entry.path.startswith(prefix.rstrip("/") + "/")
            ):
                entries.append(entry)
    except RemoteError:
        raise
    except (HfHubHTTPError, HFValidationError) as exc:
        raise RemoteError(f"{target}: {first_line(exc)}") from exc
    except Exception as exc:  # the client's own transport errors (timeouts, resets, TLS)
        raise RemoteError(f"{target}: listing failed: {type(exc).__name__}: {exc}") from exc
    if not entries:
        raise RemoteError(f"{target}: no such file in {repo} at {commit}")
    shown = f"hf://{match['kind'] + '/' if match['kind'] else ''}{repo}@{commit}"
    files = [
        RemoteFile(
            url=hf_hub_url(
                repo, entry.path, repo_type=repo_type, revision=commit, endpoint=endpoint
            ),
            shown=f"{shown}/{entry.path}",
            path=entry.path,
            size=entry.size,
            sha256=entry.lfs.sha256 if entry.lfs is not None else None,
        )
        for entry in sorted(entries, key=lambda e: e.path)
    ]
    headers = build_hf_headers(token=token, library_name="modelward")
    return RemoteSource(target, shown, files, commit, headers)


def redact(target: str) -> str:
    """`target` as reports may show it: a URL without user, password, query or fragment."""
    if not target.startswith(("http://", "https://")):
        return target
    parts = urlsplit(target)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _resolve_url(target: str) -> RemoteSource:
    parts = urlsplit(target)
    shown = redact(target)
    if not parts.hostname:
        raise RemoteError(f"{shown}: not a URL with a host")
    name = parts.path.rsplit("/", 1)[-1] or parts.hostname
    url = urlunsplit((parts.scheme, parts.netloc, quote(parts.path, safe="/%:@"), parts.query, ""))
    return RemoteSource(target, shown, [RemoteFile(url, shown, name)])
