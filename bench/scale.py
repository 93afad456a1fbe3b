"""Scale benchmark: files/s and MB/s for local scans (1 and 2 processes) and on a local Ray.

Not a test. Generates a corpus of small pickles, PyTorch zip checkpoints, safetensors and
ONNX files plus a few MB-sized ones in a temporary folder (deleted afterwards), warms the
page cache, and times each way of scanning it (best of --repeat). Ray's own costs are
measured apart: starting and stopping a local Ray, and a no-op task per file and per batch.
Prints a Markdown table for docs/benchmarks.md ("Scale"). Reproduce with:

    python bench/scale.py --files 600 --repeat 3

Needs the dev extra (torch, safetensors, onnx, ray). The load average is printed with
every figure: the machine may be shared, so compare figures taken at the same load.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import pickle
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

import modelward
from modelward import runner
from modelward.config import ScanConfig
from modelward.distributed import scan_on_ray
from modelward.findings import ScanReport
from modelward.runner import scan_paths
from modelward.scanner import iter_files
from modelward.store import open_store

MB = 1 << 20
#: Share of each kind among the small files, and how many MB-sized files come on top.
MIX = {"pickle": 0.4, "torch": 0.25, "safetensors": 0.25, "onnx": 0.1}
LARGE = {"torch": (4, 4 * MB), "safetensors": (4, 8 * MB), "onnx": (2, 2 * MB)}


class Payload:
    """Pickles as `os.system('true')`; written, never loaded."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("true",))


def weights(rng: np.random.Generator, nbytes: int) -> np.ndarray:
    return rng.standard_normal(max(nbytes // 4, 1), dtype=np.float32)


def write(kind: str, path: Path, nbytes: int, rng: np.random.Generator, evil: bool) -> None:
    if kind == "pickle":
        data: Any = {"w": weights(rng, nbytes).tolist()[:2000], "name": path.stem}
        path.write_bytes(pickle.dumps([data, Payload()] if evil else data, protocol=4))
    elif kind == "torch":
        state = {"layer.weight": torch.from_numpy(weights(rng, nbytes))}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path.write_bytes(buffer.getvalue())
    elif kind == "safetensors":
        save_file({"layer.weight": weights(rng, nbytes)}, str(path), metadata={"n": path.stem})
    else:
        w = weights(rng, nbytes)
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "w"], ["y"])],
            path.stem,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(w)])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(w)])],
            [numpy_helper.from_array(w, "w")],
        )
        onnx.save(helper.make_model(graph), str(path))


def build_corpus(root: Path, files: int, seed: int = 0) -> list[Path]:
    """`files` files in all: small ones (1-100 KiB) in folders of 50, and the MB-sized `LARGE`."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    kinds = [k for k, share in MIX.items() for _ in range(round(files * share))]
    small = files - sum(n for n, _ in LARGE.values())
    pick.shuffle(kinds)
    for i, kind in enumerate(kinds[:small]):
        folder = root / f"batch-{i // 50:03}"
        folder.mkdir(exist_ok=True)
        suffix = {"pickle": "pkl", "torch": "pt", "safetensors": "safetensors", "onnx": "onnx"}
        nbytes = int(1024 * 10 ** pick.uniform(0, 2))
        write(kind, folder / f"{i:05}.{suffix[kind]}", nbytes, rng, evil=i % 20 == 0)
    large = root / "large"
    large.mkdir()
    for kind, (count, nbytes) in LARGE.items():
        for j in range(count):
            write(kind, large / f"{kind}-{j}.bin", nbytes, rng, evil=False)
    return list(iter_files([root]))


def warm(files: list[Path]) -> int:
    total = 0
    for path in files:
        total += len(path.read_bytes())
    return total


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any, float]:
    """Fastest of `repeat` runs, its return value, and the 1-minute load when it started."""
    runs = []
    for _ in range(repeat):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        value = fn()
        runs.append((time.perf_counter() - start, value, load))
    return min(runs, key=lambda run: run[0])


def summary(report: ScanReport) -> tuple[int, int, int]:
    """Results, findings and errors: every way of scanning must agree on them."""
    return len(report.results), len(report.findings), len(report.errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600, help="corpus size (default 600)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--cpus", type=int, default=2, help="local processes / Ray CPUs")
    args = parser.parse_args(argv)
    import ray

    config = ScanConfig()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="modelward-scale-") as tmp:
        # The digest cache of stored scans (and of Ray workers, which inherit this) goes too.
        os.environ["MODELWARD_CACHE_DIR"] = f"{tmp}/cache"
        root = Path(tmp) / "corpus"
        root.mkdir()
        files = build_corpus(root, args.files)
        total = warm(files)
        n = len(files)
        print(f"corpus: {n} files, {total / MB:.1f} MB; load {os.getloadavg()}", file=sys.stderr)
        agreed: set[tuple[int, int, int]] = set()

        def measure(name: str, fn: Callable[[], ScanReport]) -> None:
            seconds, report, load = best(fn, args.repeat)
            agreed.add(summary(report))
            rows.append((name, seconds, load))
            print(f"{name}: {seconds:.2f} s (load {load:.2f})", file=sys.stderr)

        for jobs in (1, args.cpus):
            measure(f"`modelward.scan`, jobs={jobs}", lambda j=jobs: modelward.scan(root, jobs=j))
        stores = iter(range(1000))

        def fresh_store() -> str:
            return f"sqlite:///{tmp}/store-{next(stores)}.db"

        def local_stored() -> ScanReport:
            with open_store(fresh_store()) as store:
                return scan_paths([root], config, jobs=args.cpus, store=store)

        measure(f"`scan_paths`, jobs={args.cpus}, + SQLite store (fresh store)", local_stored)

        def on_ray(store_url: str | None = None) -> ScanReport:
            return scan_on_ray([root], config=config, address=None, store_url=store_url)

        # Cold: what `modelward scan --ray` does, Ray start and stop included.
        measure(
            f"`scan_on_ray`, local Ray ({args.cpus} CPUs), start + stop included",
            lambda: scan_on_ray(
                [root], config=config, address=None, store_url=None, num_cpus=args.cpus
            ),
        )
        start = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=args.cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
        ray_start = time.perf_counter() - start
        measure(f"`scan_on_ray`, Ray already running ({args.cpus} CPUs)", on_ray)
        measure(
            "`scan_on_ray` + SQLite store written by the tasks (fresh store)",
            lambda: on_ray(fresh_store()),
        )
        batch_files = runner.MAX_BATCH_FILES
        runner.MAX_BATCH_FILES = 1
        measure("`scan_on_ray`, one task per file (no batching)", on_ray)
        runner.MAX_BATCH_FILES = batch_files

        @ray.remote
        def noop(path: str) -> dict[str, Any]:
            return {"path": path}

        per_task, _, task_load = best(
            lambda: ray.get([noop.remote(str(p)) for p in files]), args.repeat
        )
        start = time.perf_counter()
        ray.shutdown()
        ray_stop = time.perf_counter() - start

    if len(agreed) != 1:
        print(f"modes disagree on (results, findings, errors): {agreed}", file=sys.stderr)
        return 1
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{when}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,")
    print(f"corpus of {n} files, {total / MB:.1f} MB; best of {args.repeat}.\n")
    print("| how | seconds | files/s | MB/s | load (1 min) |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, load in rows:
        print(
            f"| {name} | {seconds:.2f} | {n / seconds:.0f} | {total / MB / seconds:.1f} "
            f"| {load:.2f} |"
        )
    print()
    print(f"- Ray start (local, {args.cpus} CPUs): {ray_start:.2f} s; stop: {ray_stop:.2f} s")
    print(f"- no-op Ray task per file: {per_task / n * 1000:.2f} ms/file (load {task_load:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
