"""Integrity benchmark: modelward hash/sign/verify against model-signing, hashlib and openssl.

Not a test. Builds a model folder under bench/corpus/integrity (git-ignored; three
weight files of --weights-mb in all, 3 GiB by default, plus the small files of a real
model), warms the page cache, times every tool in the same run (round-robin, best of
--repeat), prints Markdown tables, and deletes the corpus unless --keep. Reproduce with:

    python bench/integrity.py --repeat 3                       # everything, 3.2 GB
    python bench/integrity.py --only verify --weights-mb 600   # verify rows only

The verify rows run each CLI as a whole process with a fresh digest cache off
(`--no-cache`) and a results store in a temporary folder, and give the ratio to
model-signing's CLI verify of the same folder in the same round. "read" is what
modelward's hasher read (`modelward.integrity.hashing.bytes_read`, counted inside
the process), so a second read of the model shows as 2x. The cached re-verify is a
whole `modelward verify` process over the unchanged folder with the digest cache
warm, best of --processes runs.

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
MIB = 1 << 20
#: The small files a real model folder has beside its weight shards.
SMALL_FILES = {
    "model.safetensors.index.json": 30_000,
    "config.json": 700,
    "generation_config.json": 150,
    "tokenizer.json": 2_000_000,
    "tokenizer_config.json": 4_000,
}
#: Runs this module as `modelward`, then prints what the hasher read (for the "read" column).
COUNTING_CLI = (
    "import sys\n"
    "from modelward.cli.main import main\n"
    "from modelward.integrity.hashing import bytes_read\n"
    "code = main(sys.argv[1:])\n"
    "print(f'bytes_read={bytes_read()}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def layout(weights_mb: int) -> dict[str, int]:
    """Three equal weight files of `weights_mb` MiB in all, then the small files."""
    third = weights_mb * MIB // 3
    weights = {f"model-0000{i}-of-00003.safetensors": third for i in (1, 2, 3)}
    return weights | SMALL_FILES


def build_corpus(root: Path, files: dict[str, int]) -> int:
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():
        if stale.is_file() and stale.name not in files:
            stale.unlink()
    block = os.urandom(16 << 20)
    total = 0
    for name, size in files.items():
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


def bytes_read_by(args: list[str]) -> int:
    """Bytes modelward's hasher read in one `modelward ARGS` process."""
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_CLI, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("bytes_read="))
    return int(line.split("=", 1)[1])


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
    parser.add_argument("--processes", type=int, default=10, help="runs of the cached CLI")
    parser.add_argument("--weights-mb", type=int, default=3072, help="weight files, MiB in all")
    parser.add_argument(
        "--only", choices=("all", "verify"), default="all", help="verify: the verify rows only"
    )
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
    os.environ["MODELWARD_STORE"] = f"sqlite:///{work / 'results.db'}"
    size = build_corpus(CORPUS, layout(args.weights_mb))
    warm(CORPUS)
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())
    big = CORPUS / "model-00001-of-00003.safetensors"
    sig_ms, sig_mw, sig_mws = work / "ms.sig", work / "mw.sig", work / "mws.sig"
    subprocess.run(
        [ms_cli, "sign", "key", str(CORPUS), "--private_key", str(key), "--signature", str(sig_ms)],
        check=True,
        capture_output=True,
    )
    mw.sign(CORPUS, key, signature=sig_mw, cache=False)
    # 100 MB shards: several per weight file, so the whole-file SHA-256 is extra work.
    mw.sign(CORPUS, key, signature=sig_mws, method="shards", shard_size=100_000_000, cache=False)

    def verify_cli(sig: Path, *extra: str) -> list[str]:
        return ["verify", str(CORPUS), "--key", str(pub), "--signature", str(sig), *extra]

    # Creates the results store (schema and all) before anything is timed: a user's store
    # exists after their first command.
    run([mw_cli, *verify_cli(sig_mw, "--no-cache")])()
    load_before = os.getloadavg()[0]

    jobs: list[tuple[str, Callable[[], object], int]] = []
    #: Verify rows: label to the CLI arguments whose bytes read are counted.
    verify_rows: dict[str, list[str]] = {}

    def add(label: str, fn: Callable[[], object], nbytes: int = size) -> None:
        jobs.append((label, fn, nbytes))

    def add_mw_verify(label: str, cli_args: list[str]) -> None:
        add(label, run([mw_cli, *cli_args]))
        verify_rows[label] = cli_args

    ms_verify = "model-signing CLI verify key (files)"
    add(
        ms_verify,
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
    add_mw_verify(
        "modelward CLI verify --no-cache (files, store on)", verify_cli(sig_mw, "--no-cache")
    )
    add_mw_verify(
        "modelward CLI verify --no-cache --no-store (files)",
        verify_cli(sig_mw, "--no-cache", "--no-store"),
    )
    add(
        "modelward API verify (files, no cache)",
        lambda: mw.verify(CORPUS, signature=sig_mw, key=pub, cache=False),
    )
    add_mw_verify(
        "modelward CLI verify of the model-signing bundle --no-cache (store on)",
        verify_cli(sig_ms, "--no-cache"),
    )
    add_mw_verify(
        "modelward CLI verify --no-cache (shards 100 MB, store on: + whole-file SHA-256)",
        verify_cli(sig_mws, "--no-cache"),
    )
    add_mw_verify(
        "modelward CLI verify --no-cache --no-store (shards 100 MB)",
        verify_cli(sig_mws, "--no-cache", "--no-store"),
    )

    if args.only == "all":
        add(
            "openssl dgst -sha256 (1 process)",
            run(["openssl", "dgst", "-sha256", *map(str, files)]),
        )
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
                    str(work / "ms2.sig"),
                ]
            ),
        )
        add(
            "modelward API hash_model (files, no cache)",
            lambda: mw.hash_model(CORPUS, cache=None),
        )
        add("modelward CLI hash --no-cache", run([mw_cli, "hash", str(CORPUS), "--no-cache"]))
        sign_cli = [mw_cli, "sign", str(CORPUS), "--key", str(key), "--no-cache"]
        add(
            "modelward CLI sign --no-cache (files)",
            run([*sign_cli, "--signature", str(work / "mw2.sig")]),
        )
        add(
            "modelward CLI sign --no-cache (shards 1 GB)",
            run([*sign_cli, "--signature", str(work / "mws2.sig"), "--method", "shards"]),
        )
        one = big.stat().st_size
        add("single weight file: hashlib sha256 whole file", hashlib_files([big], 1), one)
        add(
            "single weight file: openssl dgst -sha256",
            run(["openssl", "dgst", "-sha256", str(big)]),
            one,
        )
        add(
            "single weight file: modelward shards of 256 MB (whole-file digest not computed)",
            lambda: mw.hash_model(big, method="shards", shard_size=256_000_000, cache=None),
            one,
        )
        add(
            "single weight file: model-signing shards of 256 MB",
            lambda: (
                model_signing.hashing.Config()
                .use_shard_serialization(shard_size=256_000_000)
                .hash(big)
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
    read = {label: bytes_read_by(cli_args) for label, cli_args in verify_rows.items()}
    ms_best = min(times[ms_verify])

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
    # Whole processes over the unchanged folder, digest cache warm (the edit above is undone,
    # and the cache re-filled once past the racy window).
    cached_args = verify_cli(sig_mw)
    run([mw_cli, *cached_args])()
    time.sleep(2.1)
    run([mw_cli, *cached_args])()
    cached_read = bytes_read_by(cached_args)
    cli_cached = best(run([mw_cli, *cached_args]), args.processes)
    cli_cached_nostore = best(run([mw_cli, *cached_args, "--no-store"]), args.processes)
    startup = best(run([mw_cli, "--version"]), args.processes)
    python_only = best(run([sys.executable, "-c", "pass"]), args.processes)
    load_after = os.getloadavg()[0]

    print(
        f"\nCorpus: {len(files)} files, {size / 1e9:.2f} GB, page cache warm; "
        f"{os.cpu_count()} cores; load average {load_before:.1f} before, {load_after:.1f} after.\n"
    )
    print(
        "| what | seconds | GB/s | speed vs model-signing CLI verify | read |\n"
        "| --- | ---: | ---: | ---: | ---: |"
    )
    for label, secs, nbytes in rows:
        ratio = f"{ms_best / secs:.2f}x" if "verify" in label else ""
        got = f"{read[label] / size:.2f}x" if label in read else ""
        print(f"| {label} | {secs:.3f} | {nbytes / secs / 1e9:.2f} | {ratio} | {got} |")
    print("\n| fast path (in-process unless CLI) | milliseconds |\n| --- | ---: |")
    print(f"| verify, one file added (fails before hashing) | {added * 1e3:.1f} |")
    print(f"| verify, one file resized (fails before hashing) | {resized * 1e3:.1f} |")
    print(f"| verify, unchanged, digest cache warm | {cached * 1e3:.1f} |")
    print(
        f"| CLI `modelward verify`, unchanged, cache warm, store on (process, best of "
        f"{args.processes}; read {cached_read} bytes) | {cli_cached * 1e3:.0f} |"
    )
    print(
        f"| CLI `modelward verify --no-store`, unchanged, cache warm (process) "
        f"| {cli_cached_nostore * 1e3:.0f} |"
    )
    print(f"| CLI `modelward --version` (interpreter start-up + imports) | {startup * 1e3:.0f} |")
    print(f"| `python -c pass` (the interpreter alone) | {python_only * 1e3:.0f} |")
    shutil.rmtree(work)
    if not args.keep:
        shutil.rmtree(CORPUS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
