"""Kill safety: SIGKILL the whole `modelward serve --workers 2` process group while uploads
stream in and large files are being scanned, then check that the store lost no answered
result, holds no half-written row, and serves and accepts uploads again after a restart.

The kill point is random but seeded (`MODELWARD_KILL_SEED`; the seed is in every failure
message), so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import random
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import create_engine, func, inspect, select, text

from modelward.config import ScanConfig
from modelward.findings import ScanResult
from modelward.scanner import scan_file
from modelward.store import open_store
from modelward.store.schema import HEAD_REVISION, ResultRow, ScanRow
from modelward.store.urls import normalise_url

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load

SEED = int(os.environ.get("MODELWARD_KILL_SEED", "20261123"))
#: The whole test (uploads until the kill, restart, checks) must end within this.
HARD_TIMEOUT = 90.0
#: Trickled uploads: this many bytes in chunks of CHUNK with PAUSE between them (~2 s each).
TRICKLE_BYTES = 4 << 20
CHUNK = 64 << 10
PAUSE = 0.03
#: Connections posting small uploads back to back, spread over both workers: more requests
#: in flight and more transactions committing when the kill comes.
SMALL_LANES = 6
#: Elements of the list pickle that takes the scanner about a second (about 2 us each).
SLOW_SCAN_ELEMENTS = 500_000


def slow_scan_pickle(salt: str) -> bytes:
    """A benign pickle of many small opcodes (~3 MB): slow to walk, fast to send."""
    return pickle.dumps([salt, *range(SLOW_SCAN_ELEMENTS)], protocol=2)


async def trickle(data: bytes, state: dict[str, bool]) -> AsyncIterator[bytes]:
    """The body in slow chunks; `state["sending"]` is True while some of it is still to come."""
    state["sending"] = True
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]
        await asyncio.sleep(PAUSE)
    state["sending"] = False


async def upload_until_killed(
    server: load.Server, rng: random.Random
) -> tuple[list[load.Outcome], dict[str, bool]]:
    """Small, trickled and slow-to-scan uploads in parallel until the group is SIGKILLed.

    The kill comes a seeded 0.3-2.5 s after the fifth 201. Returns every outcome and what
    was in flight at the kill (an upload still sending, a large scan still unanswered).
    """
    delay = rng.uniform(0.3, 2.5)
    outcomes: list[load.Outcome] = []
    killed = asyncio.Event()
    trickling: dict[str, bool] = {"sending": False}
    in_flight = {"scan": 0}
    at_kill: dict[str, bool] = {}
    nonce = secrets.token_hex(6)
    counter = iter(range(1_000_000))

    def named(kind: str, data: bytes, bad: bool) -> load.Upload:
        return load.Upload(f"k{next(counter):05d}-{kind}.pkl", data, bad)

    async with load.async_client(concurrency=SMALL_LANES + 2, timeout=60) as client:

        async def small() -> None:
            while not killed.is_set():
                n = rng.randrange(40)  # repeats, so cached results are written too
                bad = n % 3 == 0
                make = load.malicious_pickle if bad else load.benign_pickle
                upload = named("small", make(1024 * (1 + n % 4), f"{nonce}-{n}"), bad)
                outcomes.append(await load.post_upload(client, server, upload))

        async def trickled() -> None:
            while not killed.is_set():
                upload = named("trickled", load.benign_pickle(TRICKLE_BYTES, nonce + "t"), False)
                body = trickle(upload.data, trickling)
                outcomes.append(await load.post_upload(client, server, upload, body))

        async def slow_scans() -> None:
            while not killed.is_set():
                upload = named("slow", slow_scan_pickle(f"{nonce}-{next(counter)}"), False)
                in_flight["scan"] += 1
                outcomes.append(await load.post_upload(client, server, upload))
                in_flight["scan"] -= 1

        async def killer() -> None:
            while sum(o.status == 201 for o in outcomes) < 5:
                await asyncio.sleep(0.01)
            await asyncio.sleep(delay)
            at_kill.update(sending=trickling["sending"], scanning=in_flight["scan"] > 0)
            server.kill()  # blocks the loop until the group is dead: no client moves meanwhile
            killed.set()

        lanes = [killer(), trickled(), slow_scans(), *(small() for _ in range(SMALL_LANES))]
        await asyncio.wait_for(asyncio.gather(*lanes), HARD_TIMEOUT)
    return outcomes, at_kill


def stored_rows(url: str, digests: set[str]) -> list[str]:
    """Problems with any scan row in the store: each must parse whole and match a fresh scan.

    Checked through the store API (every row of every digest the client ever sent, and of
    every model the store lists) and in the tables (no scan without a result, no dangling
    result reference, as many rows as the API returns, the schema at the newest revision).
    """
    problems: list[str] = []
    store = open_store(url)
    try:
        listed = {m.sha256 for m in store.models()}
        if not listed <= digests:
            problems.append(f"store lists digests nobody uploaded: {listed - digests}")
        seen = 0
        for digest in digests:
            for scan in store.scans_for_digest(digest):
                seen += 1
                if scan.sha256 != digest or not isinstance(scan.result, ScanResult):
                    problems.append(f"scan {scan.id}: sha256 {scan.sha256}, result {scan.result}")
                if not scan.ruleset or scan.scanned_at.tzinfo is None:
                    problems.append(f"scan {scan.id}: ruleset {scan.ruleset!r}, {scan.scanned_at}")
                scan.result.to_dict()
    finally:
        store.close()
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as db:
            if engine.dialect.name == "sqlite":
                integrity = db.execute(text("PRAGMA integrity_check")).scalar_one()
                if integrity != "ok":
                    problems.append(f"sqlite integrity_check: {integrity}")
            revisions = db.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            if revisions != [HEAD_REVISION]:
                problems.append(f"schema revisions after the kill: {revisions}")
            rows = db.execute(select(func.count()).select_from(ScanRow)).scalar_one()
            empty = db.execute(
                select(func.count())
                .select_from(ScanRow)
                .where(ScanRow.result_id.is_(None), ScanRow.result.is_(None))
            ).scalar_one()
            dangling = db.execute(
                select(func.count())
                .select_from(ScanRow)
                .outerjoin(ResultRow, ScanRow.result_id == ResultRow.id)
                .where(ScanRow.result_id.is_not(None), ResultRow.id.is_(None))
            ).scalar_one()
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if rows != seen:
        problems.append(f"{rows} rows in scans, {seen} reachable through the store API")
    if empty or dangling:
        problems.append(f"{empty} scans without a result, {dangling} with a dangling result")
    if not {"scans", "results", "verdicts"} <= tables:
        problems.append(f"tables after the kill: {sorted(tables)}")
    return problems


def same_as_fresh_scan(url: str, uploads: dict[str, load.Upload], workdir: Path) -> list[str]:
    """Every stored result of a digest has the findings a scan of the same bytes gives now."""
    problems = []
    store = open_store(url)
    try:
        for digest, upload in uploads.items():
            path = workdir / "fresh" / digest
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(upload.data)
            fresh = scan_file(path, ScanConfig())
            want = sorted((f.rule_id, f.severity) for f in fresh.findings)
            for scan in store.scans_for_digest(digest):
                got = sorted((f.rule_id, f.severity) for f in scan.result.findings)
                if got != want:
                    problems.append(f"scan {scan.id} of {upload.name}: {got} != fresh {want}")
    finally:
        store.close()
    return problems


def spool_folders(server: load.Server) -> dict[str, bool]:
    """The spool folders under the server's TMPDIR, each with whether a live process holds it."""
    folders = {}
    for lock_path in server.tmpdir.glob("modelward-serve-*/spool-*.lock"):
        with lock_path.open("rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                folders[lock_path.stem] = False
                fcntl.flock(lock, fcntl.LOCK_UN)
            except BlockingIOError:
                folders[lock_path.stem] = True
    return folders


def test_sigkill_mid_upload_and_mid_scan_loses_no_answered_result(
    store_url: str, tmp_path: Path
) -> None:
    rng = random.Random(f"{SEED}-{store_url.split(':', 1)[0]}")
    server = load.Server(store_url, tmp_path)
    server.start()
    try:
        outcomes, at_kill = asyncio.run(upload_until_killed(server, rng))
    finally:
        server.kill()
    why = f"(MODELWARD_KILL_SEED={SEED}; server log:\n{server.tail()})"
    answered = [o for o in outcomes if o.status == 201]
    failed = [o for o in outcomes if o.status not in (201, None)]
    assert len(answered) >= 5, why
    assert not failed, f"{[(o.upload.name, o.status, o.error) for o in failed]} {why}"
    # Something was in the middle of being sent or scanned when the group died.
    assert at_kill["sending"] or at_kill["scanning"], f"{at_kill} {why}"
    left_by_the_dead = {name for name, alive in spool_folders(server).items() if not alive}
    stray = [p for p in server.tmpdir.rglob("body") if p.parent.parent.name in left_by_the_dead]
    print(
        f"seed {SEED}: {len(outcomes)} uploads, {len(answered)} answered before the kill; "
        f"in flight at the kill: {at_kill}; {len(stray)} upload bodies left by the dead"
    )

    sent = {o.upload.sha256: o.upload for o in outcomes}
    assert stored_rows(store_url, set(sent)) == [], why
    assert same_as_fresh_scan(store_url, sent, tmp_path) == [], why

    server.start()
    try:
        # Every answered upload is still there, readable through the API and the store.
        assert load.check_stored(server, answered, exact=False) == [], why
        # The restarted server accepts and stores new uploads.
        fresh = load.make_uploads(4, distinct=4, seed=SEED)
        after = asyncio.run(load.upload_all(server, fresh, concurrency=4, timeout=30))
        assert [o.status for o in after] == [201] * 4, why
        assert load.check_stored(server, after) == [], why
        # The killed processes' upload spools (and any half-received body) were swept.
        assert not left_by_the_dead & set(spool_folders(server)), why
        assert not [p for p in stray if p.exists()], why
        assert all(spool_folders(server).values()), why
    finally:
        server.stop()
