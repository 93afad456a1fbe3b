"""Byte ranges of remote files over HTTP(S), bounded against hostile servers.

Scanners read a file through a seekable stream; `RangeReader` is that stream for a file on a
server: each read that misses its cache becomes one `Range` request for what the scanner asked
plus a read-ahead block. Nothing trusts the server:

- a response bigger than the range asked for, a range that starts elsewhere, or a total size
  other than the listing's is a `RemoteError`; the body is streamed and cut at the first byte
  too many, so an oversending server costs one block, not memory;
- a server that ignores `Range` is read only from byte 0 and only as far as needed; from any
  other offset it is an error (it would send the whole file for every read);
- redirects are followed up to `max_redirects`; connect and read timeouts bound a stalled
  server; connection errors, timeouts and 5xx answers are retried `retries` times with
  exponential back-off, then reported;
- responses are asked for and read without content coding (`Accept-Encoding: identity`, raw
  bytes), so a server cannot send a compression bomb.

A `RemoteError` is an `OSError`: the dispatcher reports it as the file's read error (exit 2).
httpx is used directly rather than fsspec's HTTP file system, whose range reads load the whole
response body before checking its length.
"""

from __future__ import annotations

import io
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from modelward.errors import ModelwardError

if TYPE_CHECKING:
    import httpx


class RemoteError(ModelwardError, OSError):
    """A remote read that failed or that the server answered wrongly."""


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts (seconds), retries and read-ahead of remote reads."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 2
    backoff: float = 0.5
    max_redirects: int = 5
    block_size: int = 64 * 1024
    cache_bytes: int = 32 * 1024**2
    #: Slowest transfer a request may keep up: past `read_timeout` plus its length at this
    #: rate, a server trickling a byte at a time (each inside the read timeout) is cut off.
    min_bytes_per_second: float = 4096.0


class ReadClient(Protocol):
    """What `RangeReader` and `scan_remote` read through: `RangeClient` for HTTP(S) and the
    Hub, `objects.ObjectClient` for S3 and GCS objects."""

    settings: HttpSettings
    requests: int
    bytes_received: int
    failures: list[str]

    def size(self, url: str, shown: str) -> int: ...

    def read(self, url: str, start: int, length: int, total: int, shown: str) -> bytes: ...

    def close(self) -> None: ...


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (client libraries write whole pages)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_length(data: bytes, length: int, start: int, shown: str) -> bytes:
    """`data` when it is exactly the `length` bytes asked for at `start`, else the error."""
    if len(data) > length:
        raise RemoteError(
            f"{shown}: the server sent more than the {length} bytes asked for at offset {start}"
        )
    if len(data) < length:
        raise RemoteError(
            f"{shown}: the server sent {len(data)} of the {length} bytes asked for at"
            f" offset {start} (truncated, or smaller than its listing says)"
        )
    return data


class RangeClient:
    """One HTTP client for a scan's remote reads, counting requests and bytes received."""

    def __init__(self, settings: HttpSettings, headers: dict[str, str] | None = None) -> None:
        import httpx

        self.settings = settings
        self.requests = 0
        self.bytes_received = 0
        self.failures: list[str] = []  # every read error, even one a scanner caught
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            follow_redirects=True,
            max_redirects=settings.max_redirects,
            headers={**(headers or {}), "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RangeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def size(self, url: str, shown: str) -> int:
        """The file's size: `Content-Range` of a one-byte range (servers answer HEAD less
        reliably than GET), or the whole body's length from a server without ranges."""
        _, total = self._get(url, 0, 1, None, shown)
        if total is None:
            raise RemoteError(f"{shown}: the server tells no size (no Content-Range)")
        return total

    def read(self, url: str, start: int, length: int, total: int, shown: str) -> bytes:
        """Exactly `length` bytes at `start` of a `total`-byte file (fewer only at its end)."""
        length = max(0, min(length, total - start))
        if length == 0:
            return b""
        try:
            data, _ = self._get(url, start, length, total, shown)
            return check_length(data, length, start, shown)
        except RemoteError as exc:
            self.failures.append(str(exc))
            raise

    def _get(
        self, url: str, start: int, length: int, total: int | None, shown: str
    ) -> tuple[bytes, int | None]:
        import httpx

        failure: Exception | None = None
        for attempt in range(self.settings.retries + 1):
            if attempt:
                time.sleep(self.settings.backoff * 2 ** (attempt - 1))
            try:
                return self._get_once(url, start, length, total, shown)
            except httpx.TooManyRedirects as exc:
                raise RemoteError(
                    f"{shown}: more than {self.settings.max_redirects} redirects (a redirect loop?)"
                ) from exc
            except (httpx.TransportError, _Transient) as exc:
                failure = exc
        raise RemoteError(
            f"{shown}: no answer after {self.settings.retries + 1} attempts:"
            f" {type(failure).__name__}: {failure}"
        )

    def _get_once(
        self, url: str, start: int, length: int, total: int | None, shown: str
    ) -> tuple[bytes, int | None]:
        self.requests += 1
        started = time.monotonic()
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        with self._client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status >= 500 or status == 429:
                raise _Transient(f"HTTP {status}")
            if status == 416:
                raise RemoteError(
                    f"{shown}: bytes {start}-{start + length - 1} are past the file's end, though"
                    " its size said otherwise (a lying size?)"
                )
            if status not in (200, 206):
                raise RemoteError(f"{shown}: HTTP {status} {response.reason_phrase}")
            told = _told_total(response, status, start, length, shown)
            if status == 200 and start > 0:
                raise RemoteError(
                    f"{shown}: the server ignores Range requests (it answered 200 for bytes at"
                    f" offset {start}); reading on would download the whole file each time"
                )
            if total is not None and told is not None and told != total:
                raise RemoteError(
                    f"{shown}: the server says the file has {told} bytes, its listing {total}"
                )
            data = bytearray()
            deadline = (
                started + self.settings.read_timeout + length / self.settings.min_bytes_per_second
            )
            for chunk in response.iter_raw():
                data += chunk
                self.bytes_received += len(chunk)
                if time.monotonic() > deadline:
                    raise RemoteError(
                        f"{shown}: {len(data)} of {length} bytes in"
                        f" {time.monotonic() - started:.0f} s: the server is too slow (trickling?)"
                    )
                if len(data) > length:
                    if status == 200:  # whole body from byte 0: keep what was asked, hang up
                        return bytes(data[:length]), told
                    check_length(bytes(data), length, start, shown)
        return bytes(data), told


class _Transient(Exception):
    """An answer worth retrying (5xx, 429)."""


def _told_total(
    response: httpx.Response, status: int, start: int, length: int, shown: str
) -> int | None:
    """The total size a response states, after checking its `Content-Range` is the one asked."""
    if status == 200:
        value = response.headers.get("Content-Length")
        return int(value) if value and value.isdigit() else None
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None:
        raise RemoteError(f"{shown}: a 206 answer without a valid Content-Range header")
    first, last, whole = int(match[1]), int(match[2]), match[3]
    if first != start or last > start + length - 1 or last < first:
        raise RemoteError(
            f"{shown}: asked for bytes {start}-{start + length - 1}, the server sent {first}-{last}"
        )
    return None if whole == "*" else int(whole)


class SegmentCache:
    """Bytes already fetched of one remote file, shared by every stream opened on it."""

    def __init__(self, limit: int) -> None:
        self._segments: OrderedDict[int, bytes] = OrderedDict()
        self._held = 0
        self._limit = limit

    def find(self, position: int) -> tuple[int, bytes] | None:
        # Newest first: a sequential read finds its segment at once.
        for start, data in reversed(self._segments.items()):
            if start <= position < start + len(data):
                self._segments.move_to_end(start)
                return start, data
        return None

    def add(self, start: int, data: bytes) -> None:
        previous = self._segments.pop(start, None)
        self._held += len(data) - (len(previous) if previous is not None else 0)
        self._segments[start] = data
        while self._held > self._limit and len(self._segments) > 1:
            _, dropped = self._segments.popitem(last=False)
            self._held -= len(dropped)


class RangeReader(io.RawIOBase):
    """A seekable read-only stream over a remote file of known size."""

    def __init__(
        self, client: ReadClient, url: str, size: int, cache: SegmentCache, shown: str
    ) -> None:
        self._client, self._url, self._size = client, url, size
        self._cache, self._shown = cache, shown
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._size - self._position)
        if want <= 0:
            return 0
        found = self._cache.find(self._position)
        if found is None:
            length = max(want, self._client.settings.block_size)
            data = self._client.read(self._url, self._position, length, self._size, self._shown)
            self._cache.add(self._position, data)
            found = (self._position, data)
        start, data = found
        piece = data[self._position - start : self._position - start + want]
        buffer[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)
