"""Integrity benchmark: modelward hash/sign/verify against model-signing, hashlib and openssl.

Not a test. Builds a >= 3 GB model folder under bench/corpus/integrity (git-ignored),
warms the page cache, times every tool in the same run (best of --repeat), prints
a Markdown table, and deletes the corpus unless --keep. Reproduce with:

    python bench/integrity.py --repeat 3

Needs the dev extra (model-signing) and `openssl` on PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CORPUS = BENCH / "corpus" / "integrity"
GIB = 1 << 30
#: Large weight shards plus the small files a real model folder has.
LAYOUT = {
    "model-00001-of-00003.safetensors": GIB,
    "model-00002-of-00003.safetensors": GIB,
    "model-00003-of-00003.safetensors": GIB,
    "model.safetensors.index.json": 30_000,
    "config.json": 700,
    "generation_config.json": 150,
    "tokenizer.json": 2_000_000,
    "tokenizer_config.json": 4_000,
}


def build_corpus(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    block = os.urandom(16 << 20)
    total = 0
    for name, size in LAYOUT.items():
        path = root / name
        total += size
        if path.is_file() and path.stat().st_size == size:
            continue
        with path.open("wb") as f:
            left = size
            while left:
                n = min(left, len(block))
                # Vary each block so no two files (or blocks) are identical.
                f.write(hashlib.sha256(f"{name}{left}".encode()).digest() + block[32:n])
                left -= n
    return total


def warm(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                while f.read(8 << 20):
                    pass


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(cmd: list[str]) -> Callable[[], object]:
    def go() -> object:
        return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    return go


def hashlib_files(files: list[Path], threads: int) -> Callable[[], object]:
    def one(p: Path) -> str:
        with p.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def go() -> object:
        if threads == 1:
            return [one(p) for p in files]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, files))

    return go


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the corpus afterwards")
    args = parser.parse_args()

    import model_signing

    import modelward.integrity as mw
    from modelward.integrity import DigestCache
    from modelward.integrity.keys import generate, write_keypair

    bindir = Path(sys.executable).parent
    ms_cli, mw_cli = str(bindir / "model_signing"), str(bindir / "modelward")
    work = Path(tempfile.mkdtemp(prefix="mwbench-"))
    key = work / "key.pem"
    pub = write_keypair(generate("p256"), key)
    os.environ["MODELWARD_CACHE_DIR"] = str(work / "cache")
    size = build_corpus(CORPUS)
    warm(CORPUS)
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    big = CORPUS / "model-00001-of-00003.safetensors"
    sig_ms, sig_mw, sig_mws = work / "ms.sig", work / "mw.sig", work / "mws.sig"
    load_before = os.getloadavg()[0]

    jobs: list[tuple[str, Callable[[], object], int]] = []

    def add(label: str, fn: Callable[[], object], nbytes: int = size) -> None:
        jobs.append((label, fn, nbytes))

    add("openssl dgst -sha256 (1 process)", run(["openssl", "dgst", "-sha256", *map(str, files)]))
    add(
        "openssl dgst -sha256 (2 processes, xargs -P2)",
        run(["sh", "-c", f"ls {CORPUS}/* | xargs -n1 -P2 openssl dgst -sha256"]),
    )
    add("hashlib.file_digest sha256 (1 thread)", hashlib_files(files, 1))
    add("hashlib.file_digest sha256 (2 threads)", hashlib_files(files, 2))

    ms_cfg = model_signing.hashing.Config()
    add("model-signing API hash (files)", lambda: ms_cfg.hash(CORPUS))
    add(
        "model-signing CLI sign key (files)",
        run(
            [
                ms_cli,
                "sign",
                "key",
                str(CORPUS),
                "--private_key",
                str(key),
                "--signature",
                str(sig_ms),
            ]
        ),
    )
    add(
        "model-signing CLI verify key (files)",
        run(
            [
                ms_cli,
                "verify",
                "key",
                str(CORPUS),
                "--signature",
                str(sig_ms),
                "--public_key",
                str(pub),
            ]
        ),
    )
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
    add("model-signing API verify key (files)", lambda: verifier.verify(CORPUS, sig_ms))

    add("modelward API hash_model (files, no cache)", lambda: mw.hash_model(CORPUS, cache=None))
    add("modelward CLI hash --no-cache", run([mw_cli, "hash", str(CORPUS), "--no-cache"]))
    add(
        "modelward CLI sign --no-cache (files)",
        run(
            [
                mw_cli,
                "sign",
                str(CORPUS),
                "--key",
                str(key),
                "--signature",
                str(sig_mw),
                "--no-cache",
            ]
        ),
    )
    add(
        "modelward CLI verify --no-cache (files)",
        run(
            [
                mw_cli,
                "verify",
                str(CORPUS),
                "--key",
                str(pub),
                "--signature",
                str(sig_mw),
                "--no-cache",
            ]
        ),
    )
    add(
        "modelward CLI verify of the model-signing bundle --no-cache",
        run(
            [
                mw_cli,
                "verify",
                str(CORPUS),
                "--key",
                str(pub),
                "--signature",
                str(sig_ms),
                "--no-cache",
            ]
        ),
    )
    add(
        "modelward CLI sign --no-cache (shards 1 GB)",
        run(
            [
                mw_cli,
                "sign",
                str(CORPUS),
                "--key",
                str(key),
                "--signature",
                str(sig_mws),
                "--method",
                "shards",
                "--no-cache",
            ]
        ),
    )
    add(
        "modelward CLI verify --no-cache (shards 1 GB)",
        run(
            [
                mw_cli,
                "verify",
                str(CORPUS),
                "--key",
                str(pub),
                "--signature",
                str(sig_mws),
                "--no-cache",
            ]
        ),
    )

    one = big.stat().st_size
    add("single 1 GiB file: hashlib sha256 whole file", hashlib_files([big], 1), one)
    add(
        "single 1 GiB file: openssl dgst -sha256",
        run(["openssl", "dgst", "-sha256", str(big)]),
        one,
    )
    add(
        "single 1 GiB file: modelward shards of 256 MB (whole-file digest not computed)",
        lambda: mw.hash_model(big, method="shards", shard_size=256_000_000, cache=None),
        one,
    )
    add(
        "single 1 GiB file: model-signing shards of 256 MB",
        lambda: (
            model_signing.hashing.Config().use_shard_serialization(shard_size=256_000_000).hash(big)
        ),
        one,
    )

    # Round-robin over the tools, best of --repeat rounds each: on a shared machine a burst
    # of load then hits every tool alike instead of whichever happened to be running.
    times: dict[str, list[float]] = {label: [] for label, _, _ in jobs}
    for round_no in range(args.repeat):
        for label, fn, _ in jobs:
            times[label].append(best(fn, 1))
            print(f"round {round_no + 1} {label}: {times[label][-1]:.3f} s", file=sys.stderr)
    rows = [(label, min(times[label]), nbytes) for label, _, nbytes in jobs]

    # Fast paths, timed in-process (milliseconds): listing/size checks and the digest cache.
    time.sleep(2.1)  # past the cache's racy window, so the files below are cacheable
    with DigestCache() as cache:
        mw.verify(CORPUS, signature=sig_mw, key=pub, cache=cache)  # fills the cache
        cached = best(lambda: mw.verify(CORPUS, signature=sig_mw, key=pub, cache=cache), 5)
    extra = CORPUS / "added.bin"
    extra.write_bytes(b"x")
    added = best(lambda: mw.verify(CORPUS, signature=sig_mw, key=pub, cache=False), 5)
    extra.unlink()
    small = CORPUS / "config.json"
    data = small.read_bytes()
    small.write_bytes(data + b" ")
    resized = best(lambda: mw.verify(CORPUS, signature=sig_mw, key=pub, cache=False), 5)
    small.write_bytes(data)
    cli_cached = best(
        run([mw_cli, "verify", str(CORPUS), "--key", str(pub), "--signature", str(sig_mw)]), 5
    )
    startup = best(run([mw_cli, "--version"]), 5)
    load_after = os.getloadavg()[0]

    print(
        f"\nCorpus: {len(files)} files, {size / 1e9:.2f} GB, page cache warm; "
        f"{os.cpu_count()} cores; load average {load_before:.1f} before, {load_after:.1f} after.\n"
    )
    print("| what | seconds | GB/s |\n| --- | ---: | ---: |")
    for label, secs, nbytes in rows:
        print(f"| {label} | {secs:.3f} | {nbytes / secs / 1e9:.2f} |")
    print("\n| fast path (in-process unless CLI) | milliseconds |\n| --- | ---: |")
    print(f"| verify, one file added (fails before hashing) | {added * 1e3:.1f} |")
    print(f"| verify, one file resized (fails before hashing) | {resized * 1e3:.1f} |")
    print(f"| verify, unchanged, digest cache warm | {cached * 1e3:.1f} |")
    print(f"| CLI `modelward verify`, unchanged, cache warm (process) | {cli_cached * 1e3:.0f} |")
    print(f"| CLI `modelward --version` (interpreter start-up + imports) | {startup * 1e3:.0f} |")
    shutil.rmtree(work)
    if not args.keep:
        shutil.rmtree(CORPUS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
