"""Load harness for `modelward serve`: many concurrent uploads on loopback, then a check that
every upload has exactly one stored result.

Not a test by itself: `tests/service/test_load.py`, `test_kill.py` and `test_serve.py` import
its pieces (`Server`, the payload makers, `upload_all`, `check_stored`), and the command line
runs a configurable load and prints latency percentiles, throughput and every problem found:

    python bench/load.py                                   # 200 uploads, all at once, SQLite
    python bench/load.py --count 1000 --concurrency 50 --sizes 1,64,512
    python bench/load.py --store "$MODELWARD_TEST_POSTGRES"    # in a scratch schema

The server is the real one (`python -m modelward serve --workers N`, its own process group,
bound to 127.0.0.1), killed with its whole group at the end. Every payload carries a random
run nonce, so a store reused across runs (a PostgreSQL test database) still holds exactly
this run's rows for this run's digests. Exit status: 0 when every upload got exactly one
stored result, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pickle
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.pickles import call_system_p4

#: How long the server may take to answer /healthz after it was started.
START_TIMEOUT = 60.0
#: File descriptors the server group may hold after a load beyond those it held before.
FD_SLACK = 16
#: Seconds a client keeps an idle connection: well under uvicorn's 5 s keep-alive timeout.
KEEPALIVE_EXPIRY = 1.0


@dataclass(frozen=True)
class Upload:
    """One file to post: its upload name, bytes, digest and whether it must be CRITICAL."""

    name: str
    data: bytes
    malicious: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Outcome:
    """What the client saw for one upload: the status (None: no response) and the answer."""

    upload: Upload
    status: int | None
    seconds: float
    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def benign_pickle(size: int, salt: str) -> bytes:
    """A plain-data pickle (a dict of floats, no globals) of about `size` bytes."""
    return pickle.dumps({"salt": salt, "weights": [0.5] * max(1, size // 9)}, protocol=4)


def malicious_pickle(size: int, salt: str) -> bytes:
    """An `os.system` pickle (CRITICAL) followed by `size` bytes of padding in its argument."""
    return call_system_p4(f"true {salt} {'x' * size}")


def make_uploads(
    count: int,
    *,
    distinct: int,
    sizes: Sequence[int] = (1024, 4096, 32768),
    malicious_share: float = 0.3,
    seed: int = 0,
) -> list[Upload]:
    """`count` uploads drawn from `distinct` contents, so the rest are byte-identical repeats.

    Contents are salted with a random run nonce; names are unique (`u0007-bad-4096.pkl`).
    """
    rng = random.Random(seed)
    nonce = secrets.token_hex(8)
    distinct = min(distinct, count)
    contents: list[tuple[bytes, bool, int]] = []
    for i in range(distinct):
        size = sizes[i % len(sizes)]
        bad = rng.random() < malicious_share
        make = malicious_pickle if bad else benign_pickle
        contents.append((make(size, f"{nonce}-{i}"), bad, size))
    picks = list(range(distinct)) + [rng.randrange(distinct) for _ in range(count - distinct)]
    rng.shuffle(picks)
    uploads = []
    for n, i in enumerate(picks):
        data, bad, size = contents[i]
        uploads.append(Upload(f"u{n:04d}-{'bad' if bad else 'ok'}-{size}.pkl", data, bad))
    return uploads


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """`modelward serve` as a child process in its own process group, on a loopback port.

    Its output goes to `log` (never a pipe, which a chatty server could fill and block on).
    """

    def __init__(
        self, store_url: str, workdir: Path, *, workers: int = 2, token: str | None = None
    ) -> None:
        self.store_url = store_url
        self.workdir = workdir
        self.workers = workers
        self.token = token or secrets.token_urlsafe(24)
        self.log = workdir / "serve.log"
        #: TMPDIR of the server, so a test can see which temporary files a killed one left.
        self.tmpdir = workdir / "tmp"
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "modelward", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--workers", str(self.workers)]
        return [*argv, "--store", self.store_url]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and wait until `/healthz` answers 200."""
        self.port = free_port()
        env = {**os.environ, "MODELWARD_SERVE_TOKEN": self.token, "TMPDIR": str(self.tmpdir)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not answer /healthz within {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group (server, uvicorn workers, scan workers) at once."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after 15 s."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def pids(self) -> list[int]:
        """Every live process of the server's group (parent, uvicorn workers, their children)."""
        if self.process is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            with suppress(ValueError, OSError):
                if os.getpgid(int(entry.name)) == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def footprint(self) -> tuple[int, int]:
        """Open file descriptors and resident MiB, summed over the server's process group."""
        fds = rss_kib = 0
        for pid in self.pids():
            with suppress(OSError):  # the process ended meanwhile
                fds += len(os.listdir(f"/proc/{pid}/fd"))
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                rss_kib += sum(int(line.split()[1]) for line in status if line[:6] == "VmRSS:")
        return fds, rss_kib // 1024

    def spooled(self) -> list[Path]:
        """Upload bodies in the server's spool (none once every request has been answered)."""
        return [p for p in self.tmpdir.rglob("*") if p.is_file() and p.suffix != ".lock"]

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def scratch_store(url: str | None, workdir: Path) -> Iterator[str]:
    """The store URL for one run: a fresh SQLite file without `url`, a fresh schema of the
    PostgreSQL database `url` (dropped afterwards), or `url` itself for anything else."""
    if url is None:
        yield f"sqlite:///{workdir / 'results.db'}"
        return
    if not url.startswith(("postgresql", "postgres")):
        yield url
        return
    import psycopg

    plain = "postgresql://" + url.split("://", 1)[1]
    schema = f"mw_load_{secrets.token_hex(6)}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def serving(store_url: str, workdir: Path, *, workers: int = 2) -> Iterator[Server]:
    server = Server(store_url, workdir, workers=workers)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def post_upload(
    client: httpx.AsyncClient, server: Server, upload: Upload, body: Any = None
) -> Outcome:
    """POST one raw upload; any transport error is an outcome without a status, not a raise.

    `body` replaces the bytes (an async iterator streams them chunked, slowly if it sleeps).
    """
    headers = {**server.headers, "Content-Type": "application/octet-stream"}
    started = time.perf_counter()
    try:
        response = await client.post(
            f"{server.url}/scans",
            params={"filename": upload.name},
            content=upload.data if body is None else body,
            headers=headers,
        )
    except httpx.HTTPError as exc:
        seconds = time.perf_counter() - started
        return Outcome(upload, None, seconds, error=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    error = "" if response.status_code == 201 else response.text[:300]
    return Outcome(upload, response.status_code, seconds, answer, error)


def async_client(concurrency: int, timeout: float) -> httpx.AsyncClient:
    """A client that drops idle connections after `KEEPALIVE_EXPIRY` seconds.

    uvicorn closes a connection idle for 5 s and httpx reuses one idle for up to 5 s by
    default: a request sent just as the server closes its connection gets a reset
    (`ReadError`), a few times in 10,000 uploads here. That is the client's race, not a lost
    upload, so the harness keeps well inside the server's timeout.
    """
    limits = httpx.Limits(
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    return httpx.AsyncClient(timeout=timeout, limits=limits)


async def upload_all(
    server: Server, uploads: Sequence[Upload], *, concurrency: int, timeout: float
) -> list[Outcome]:
    """Post every upload, at most `concurrency` in flight; the whole run is cut at `timeout`."""
    gate = asyncio.Semaphore(concurrency)
    async with async_client(concurrency, timeout) as client:

        async def one(upload: Upload) -> Outcome:
            async with gate:
                return await post_upload(client, server, upload)

        return await asyncio.wait_for(asyncio.gather(*(one(u) for u in uploads)), timeout)


def check_stored(server: Server, outcomes: Sequence[Outcome], *, exact: bool = True) -> list[str]:
    """Problems with what the store holds for the 201 outcomes; empty when all is well.

    Each 201 must have its own scan id, resolve through `GET /scans/{id}` and the store API
    with the upload's digest and name, and malicious uploads must be stored CRITICAL. With
    `exact`, the store must hold exactly those ids for each digest (no duplicate row, none
    missing); without it (a killed server may have stored a scan it never answered), only
    none missing.
    """
    from modelward.findings import Severity
    from modelward.store import open_store

    problems = []
    accepted = [o for o in outcomes if o.status == 201]
    ids = [str(o.body.get("id")) for o in accepted]
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} scan ids answered twice")
    expected: dict[str, set[str]] = {}
    with httpx.Client(timeout=30) as client:
        for outcome, scan_id in zip(accepted, ids, strict=True):
            upload = outcome.upload
            expected.setdefault(upload.sha256, set()).add(scan_id)
            if outcome.body.get("sha256") != upload.sha256:
                problems.append(f"{upload.name}: answered sha256 {outcome.body.get('sha256')}")
            got = client.get(f"{server.url}/scans/{scan_id}")
            if got.status_code != 200 or got.json().get("sha256") != upload.sha256:
                problems.append(f"{upload.name}: GET /scans/{scan_id} -> {got.status_code}")
    store = open_store(server.store_url)
    try:
        for outcome, scan_id in zip(accepted, ids, strict=True):
            upload = outcome.upload
            stored = store.get_scan(scan_id)
            if stored is None:
                problems.append(f"{upload.name}: scan {scan_id} not in the store")
                continue
            if (stored.sha256, stored.path, stored.source) != (
                upload.sha256,
                upload.name,
                "service",
            ):
                problems.append(
                    f"{upload.name}: stored as {stored.path} {stored.sha256} {stored.source}"
                )
            severity = stored.result.max_severity
            if upload.malicious != (severity is not None and severity >= Severity.CRITICAL):
                problems.append(f"{upload.name}: stored max severity {severity}")
        for digest, want in expected.items():
            rows = [s.id for s in store.scans_for_digest(digest)]
            if (
                len(rows) != len(set(rows))
                or not want <= set(rows)
                or (exact and len(rows) != len(want))
            ):
                problems.append(
                    f"{digest[:12]}: store holds {len(rows)} scans, {len(want)} uploads got 201"
                )
    finally:
        store.close()
    return problems


@dataclass(frozen=True)
class Summary:
    uploads: int
    accepted: int
    cached: int
    seconds: float
    p50: float
    p90: float
    p99: float
    errors: list[str]
    #: (open fds, resident MiB) of the server group when it was up, and after the load.
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)

    @property
    def throughput(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


def summarise(outcomes: Sequence[Outcome], seconds: float) -> Summary:
    """Latency percentiles (seconds, over every upload that got a response) and errors."""
    latencies = sorted(o.seconds for o in outcomes if o.status is not None) or [0.0]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else []
    p50, p90, p99 = (cuts[q - 1] for q in (50, 90, 99)) if cuts else (latencies[0],) * 3
    errors = [f"{o.upload.name}: {o.status} {o.error}" for o in outcomes if o.status != 201]
    accepted = sum(o.status == 201 for o in outcomes)
    cached = sum(o.status == 201 and bool(o.body.get("cached")) for o in outcomes)
    return Summary(len(outcomes), accepted, cached, seconds, p50, p90, p99, errors)


def run(
    store_url: str,
    workdir: Path,
    uploads: Sequence[Upload],
    *,
    workers: int,
    concurrency: int,
    timeout: float,
) -> tuple[Summary, list[str]]:
    """Start a server, post every upload, check the store; the summary and the problems.

    Upload bodies still spooled after the last answer, or more than `FD_SLACK` file
    descriptors left open than before the load, are problems too (leaks).
    """
    with serving(store_url, workdir, workers=workers) as server:
        before = server.footprint()
        started = time.perf_counter()
        outcomes = asyncio.run(
            upload_all(server, uploads, concurrency=concurrency, timeout=timeout)
        )
        summary = summarise(outcomes, time.perf_counter() - started)
        problems = summary.errors + check_stored(server, outcomes)
        time.sleep(0.5)  # the server closes the client's connections
        after = server.footprint()
        problems += [f"upload left in the spool: {p}" for p in server.spooled()]
        if after[0] > before[0] + FD_SLACK:
            problems.append(
                f"server file descriptors {before[0]} before the load, {after[0]} after"
            )
    return replace(summary, before=before, after=after), problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="uploads (default 200)")
    parser.add_argument("--concurrency", type=int, default=200, help="in flight at once")
    parser.add_argument("--distinct", type=int, help="distinct contents (default count/4)")
    parser.add_argument(
        "--sizes", default="1,4,32", help="payload sizes in KiB, cycled (default 1,4,32)"
    )
    parser.add_argument("--malicious", type=float, default=0.3, help="share of malicious files")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument(
        "--store", help="store URL (default: a fresh SQLite file; PostgreSQL: a fresh schema)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="hard limit, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sizes = [int(float(s) * 1024) for s in args.sizes.split(",")]
    distinct = args.distinct or max(1, args.count // 4)
    uploads = make_uploads(
        args.count, distinct=distinct, sizes=sizes, malicious_share=args.malicious, seed=args.seed
    )
    backend = (args.store or "sqlite").split(":", 1)[0]
    with (
        tempfile.TemporaryDirectory(prefix="modelward-load-") as tmp,
        scratch_store(args.store, Path(tmp)) as store_url,
    ):
        summary, problems = run(
            store_url,
            Path(tmp),
            uploads,
            workers=args.workers,
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
        log = (Path(tmp) / "serve.log").read_text(errors="replace")
    load = os.getloadavg()[0]
    print(
        f"{summary.uploads} uploads ({distinct} distinct, sizes {args.sizes} KiB), "
        f"concurrency {args.concurrency}, {args.workers} workers, {backend}, load {load:.1f}"
    )
    print("| uploads | 201 | cached | p50 ms | p90 ms | p99 ms | uploads/s | wall s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {summary.uploads} | {summary.accepted} | {summary.cached} "
        f"| {summary.p50 * 1000:.0f} | {summary.p90 * 1000:.0f} | {summary.p99 * 1000:.0f} "
        f"| {summary.throughput:.1f} | {summary.seconds:.2f} |"
    )
    print(
        f"server group: {summary.before[0]} -> {summary.after[0]} open files, "
        f"{summary.before[1]} -> {summary.after[1]} MiB resident"
    )
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        print(f"server log (last 4000 characters):\n{log[-4000:]}", file=sys.stderr)
    print("every upload has exactly one stored result" if not problems else "FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
