"""Objects in S3 and Google Cloud Storage, listed and read by range through fsspec.

`s3://BUCKET/KEY` and `gs://BUCKET/KEY` name one object; `s3://BUCKET/PREFIX/` (or a prefix
that is not itself an object) names every object under it, listed recursively and sorted. The
file systems are the field's own clients, imported only when such a target is scanned: `s3fs`
(the `s3` extra) and `gcsfs` (the `gcs` extra). Credentials come from the usual places (for S3
the AWS_* environment variables, profiles and instance roles, and `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_S3` for an S3-compatible server, all read by botocore; for GCS Google's
default credentials); they are never part of a location that a report shows.

`ObjectClient` has the read interface of `http.RangeClient`, so `RangeReader` streams over an
object exactly as over a URL: each read that misses the cache is one ranged GET
(`fs.cat_file(path, start, end)`), and a body longer than asked for, or shorter before the
object's end, is a `RemoteError`. Connect and read timeouts and retries follow `HttpSettings`
(for S3: botocore's `connect_timeout`, `read_timeout` and standard-mode retries).

Object stores do not state a SHA-256 in general (an ETag is an MD5, or opaque for multipart
uploads), so results of files read by range are not stored by digest; small files fetched whole
are hashed as for any remote file.
"""

from __future__ import annotations

import importlib
from typing import Any

from modelward.remote.http import HttpSettings, RemoteError, check_length, first_line
from modelward.remote.sources import MAX_LISTED_FILES, RemoteFile, RemoteSource

#: Target prefixes read through an object store's fsspec file system.
OBJECT_PREFIXES = ("s3://", "gs://")
#: Objects one prefix may list before the listing stops with an error.
MAX_OBJECTS = MAX_LISTED_FILES

_EXTRAS = {"s3://": ("s3fs", "S3FileSystem", "s3"), "gs://": ("gcsfs", "GCSFileSystem", "gcs")}


def is_object_target(target: str) -> bool:
    """Whether `target` names an object or a prefix in S3 or Google Cloud Storage."""
    return target.startswith(OBJECT_PREFIXES)


def object_filesystem(scheme: str, settings: HttpSettings) -> Any:
    """A fresh file system for `scheme` (`s3://` or `gs://`) with `settings`' timeouts."""
    module_name, class_name, extra = _EXTRAS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RemoteError(
            f"{scheme} targets need {module_name}: pip install 'modelward[{extra}]'"
        ) from exc
    filesystem = getattr(module, class_name)
    if scheme == "s3://":
        fs = filesystem(
            skip_instance_cache=True,
            use_listings_cache=False,
            config_kwargs={
                "connect_timeout": settings.connect_timeout,
                "read_timeout": settings.read_timeout,
                "retries": {"total_max_attempts": settings.retries + 1, "mode": "standard"},
            },
        )
        fs.retries = 1  # botocore retries each request; s3fs would multiply the attempts
        return fs
    return filesystem(
        skip_instance_cache=True,
        use_listings_cache=False,
        requests_timeout=settings.read_timeout,
    )


def resolve_objects(
    target: str, settings: HttpSettings, max_objects: int = MAX_OBJECTS
) -> RemoteSource:
    """The objects `target` names, with sizes; raises `RemoteError` (exit 2) when there are
    none, the bucket or the credentials are missing, or the prefix holds over `max_objects`."""
    scheme = next(p for p in OBJECT_PREFIXES if target.startswith(p))
    path = target[len(scheme) :].strip("/")
    if not path:
        raise RemoteError(f"{target}: no bucket named ({scheme}BUCKET[/KEY or /PREFIX/])")
    fs = object_filesystem(scheme, settings)
    root = f"{scheme}{path}"
    try:
        info = _info(fs, path)
        if info is not None and info.get("type") == "file" and not target.endswith("/"):
            name = path.rsplit("/", 1)[-1]
            files = [RemoteFile(path, root, name, _size(info))]
        else:
            files = _listing(fs, path, root, max_objects)
        if not files and "/" in path:
            fs.info(path.split("/", 1)[0])  # no bucket: FileNotFoundError, not "no objects"
    except RemoteError:
        raise
    except FileNotFoundError as exc:
        raise RemoteError(f"{root}: no such bucket, object or prefix ({first_line(exc)})") from exc
    except PermissionError as exc:
        raise RemoteError(f"{root}: access denied ({first_line(exc)})") from exc
    except Exception as exc:  # the client's own errors: botocore, aiohttp, google-auth
        raise RemoteError(f"{root}: {type(exc).__name__}: {first_line(exc)}") from exc
    if not files:
        raise RemoteError(f"{root}: no objects under this prefix")
    return RemoteSource(target, root, files, client=lambda s: ObjectClient(fs, s))


def _info(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = fs.info(path)
    except FileNotFoundError:
        if "/" not in path:
            raise  # a bucket that is not there
        return None  # perhaps a prefix: the listing tells
    return info


def _listing(fs: Any, path: str, root: str, max_objects: int) -> list[RemoteFile]:
    files: list[RemoteFile] = []
    base = path + "/"
    for _folder, _dirs, found in fs.walk(path, detail=True):
        for info in found.values():
            if info.get("type") != "file":
                continue
            name = str(info["name"]).strip("/")
            if not name.startswith(base):
                continue
            relative = name[len(base) :]
            files.append(RemoteFile(name, f"{root}/{relative}", relative, _size(info)))
            if len(files) > max_objects:
                raise RemoteError(
                    f"{root}: more than {max_objects} objects under this prefix;"
                    " scan a narrower prefix"
                )
    return sorted(files, key=lambda f: f.path)


def _size(info: dict[str, Any]) -> int:
    size = info.get("size")
    if not isinstance(size, int) or size < 0:
        raise RemoteError(f"{info.get('name')}: the listing gives no valid size ({size!r})")
    return size


class ObjectClient:
    """Ranged reads of objects through one fsspec file system, counted like `RangeClient`'s."""

    def __init__(self, fs: Any, settings: HttpSettings) -> None:
        self.fs = fs
        self.settings = settings
        self.requests = 0
        self.bytes_received = 0
        self.failures: list[str] = []  # every read error, even one a scanner caught

    def close(self) -> None:
        pass  # the file system's session closes with its event loop

    def __enter__(self) -> ObjectClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def size(self, url: str, shown: str) -> int:
        try:
            return _size(self.fs.info(url))
        except RemoteError:
            raise
        except Exception as exc:
            raise RemoteError(f"{shown}: {type(exc).__name__}: {first_line(exc)}") from exc

    def read(self, url: str, start: int, length: int, total: int, shown: str) -> bytes:
        """Exactly `length` bytes at `start` of a `total`-byte object (fewer only at its end)."""
        length = max(0, min(length, total - start))
        if length == 0:
            return b""
        try:
            self.requests += 1
            try:
                data = self.fs.cat_file(url, start=start, end=start + length)
            except Exception as exc:
                raise RemoteError(
                    f"{shown}: reading {length} bytes at offset {start}:"
                    f" {type(exc).__name__}: {first_line(exc)}"
                ) from exc
            if not isinstance(data, bytes):
                raise RemoteError(f"{shown}: the file system returned no bytes")
            self.bytes_received += len(data)
            return check_length(data, length, start, shown)
        except RemoteError as exc:
            self.failures.append(str(exc))
            raise


__all__ = [
    "MAX_OBJECTS",
    "OBJECT_PREFIXES",
    "ObjectClient",
    "is_object_target",
    "object_filesystem",
    "resolve_objects",
]
