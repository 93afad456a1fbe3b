"""Cost of `modelward diff --weights` with change ranks, on a GPT-2-shaped model of >= 1 GB.

Not a test. Writes a float32 safetensors base model (GPT-2 layout, vocabulary 50,257; with
the defaults d_model 2048 and 4 layers: 1.21 GB) and candidates under --out, then measures,
each in a fresh process with the files in the page cache:

- drift: `tensor_drift` alone (what `--weights` did before change ranks);
- ranks: `analyse_edits` (the randomised range finder on every changed matrix, and the pattern);
- peak memory: tracemalloc's peak (numpy's buffers: sketch and row blocks) and the sampled
  peak of the process's anonymous resident memory (RssAnon; the memory-mapped file pages are
  page cache, not counted).

Candidates: `rome` (a rank-one update of one MLP matrix), `lora` (rank 8 merged into the
attention matrices of every layer), `finetune` (every tensor moved by full-rank noise, the
worst case: every matrix is sketched). Reproduce with:

    python bench/weight_edits.py                       # all three, 1.21 GB each, ~3 GB disk
    python bench/weight_edits.py --pattern rome --layers 2 --keep

Files are deleted unless --keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

VOCAB = 50257
POSITIONS = 1024
PATTERNS = ("rome", "lora", "finetune")
Tensor = tuple[str, tuple[int, ...]]


def layout(d: int, layers: int) -> list[Tensor]:
    tensors: list[Tensor] = [("wte.weight", (VOCAB, d)), ("wpe.weight", (POSITIONS, d))]
    for i in range(layers):
        p = f"h.{i}."
        tensors += [
            (p + "ln_1.weight", (d,)),
            (p + "attn.c_attn.weight", (d, 3 * d)),
            (p + "attn.c_proj.weight", (d, d)),
            (p + "ln_2.weight", (d,)),
            (p + "mlp.c_fc.weight", (d, 4 * d)),
            (p + "mlp.c_proj.weight", (4 * d, d)),
        ]
    return tensors


def _base(index: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(index)
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)


Edit = Callable[[str, np.ndarray], np.ndarray]


def _rome(target: str) -> Edit:
    def edit(name: str, w: np.ndarray) -> np.ndarray:
        if name != target:
            return w
        rng = np.random.default_rng(99)
        u = rng.standard_normal(w.shape[0], dtype=np.float32)
        v = rng.standard_normal(w.shape[1], dtype=np.float32) * np.float32(1e-3)
        edited: np.ndarray = w + np.outer(u, v)
        return edited

    return edit


def _lora(name: str, w: np.ndarray) -> np.ndarray:
    if "attn." not in name or w.ndim != 2:
        return w
    rng = np.random.default_rng(len(name))
    a = rng.standard_normal((w.shape[0], 8), dtype=np.float32) * np.float32(0.01)
    b = rng.standard_normal((8, w.shape[1]), dtype=np.float32) * np.float32(0.01)
    return w + a @ b


def _finetune(name: str, w: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(len(name) + 7)
    tuned: np.ndarray = w + rng.standard_normal(w.shape, dtype=np.float32) * np.float32(2e-4)
    return tuned


def _arrays(tensors: list[Tensor], edit: Edit | None) -> Iterator[np.ndarray]:
    for index, (name, shape) in enumerate(tensors):
        w = _base(index, shape)
        yield w if edit is None else edit(name, w).astype(np.float32)


def write(path: Path, tensors: list[Tensor], edit: Edit | None) -> int:
    """A safetensors file written tensor by tensor (never the whole model in memory)."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in tensors:
        nbytes = 4 * int(np.prod(shape))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for array in _arrays(tensors, edit):
            out.write(np.ascontiguousarray(array).tobytes())
    return path.stat().st_size


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(reference: str, candidate: str) -> dict[str, object]:
    """Run in a fresh process: drift, then ranks, timed, with memory peaks."""
    from modelward.modeldiff.edits import analyse_edits
    from modelward.modeldiff.readers import read_structure
    from modelward.modeldiff.weights import tensor_drift

    peak_anon = _rss_anon()
    base_anon = peak_anon
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_anon
        while not stop.wait(0.02):
            peak_anon = max(peak_anon, _rss_anon())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ref, _ = read_structure(Path(reference))
    cand, _ = read_structure(Path(candidate))
    start = time.perf_counter()
    drifts, _ = tensor_drift(ref, cand)
    drift_s = time.perf_counter() - start
    tracemalloc.start()
    start = time.perf_counter()
    ranks, pattern = analyse_edits(ref, cand, drifts)
    ranks_s = time.perf_counter() - start
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stop.set()
    sampler.join()
    return {
        "drift_s": round(drift_s, 2),
        "ranks_s": round(ranks_s, 2),
        "matrices_ranked": len(ranks),
        "pattern": pattern.kind if pattern else None,
        "ranks": sorted({r.label for r in ranks.values()}),
        "traced_peak_mib": round(traced / (1 << 20), 1),
        "anon_peak_mib": round(peak_anon / (1 << 20), 1),
        "anon_growth_mib": round((peak_anon - base_anon) / (1 << 20), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "corpus" / "edits")
    parser.add_argument("--d-model", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--pattern",
        nargs="+",
        default=["rome", "lora", "finetune"],
        choices=["rome", "lora", "finetune"],
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--measure", nargs=2, metavar=("REFERENCE", "CANDIDATE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    tensors = layout(args.d_model, args.layers)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / "base.safetensors"
    size = write(base, tensors, None)
    print(
        f"model: {size / 1e9:.2f} GB float32, {len(tensors)} tensors"
        f" (d={args.d_model}, {args.layers} layers)"
    )
    edits: dict[str, Edit] = {
        "rome": _rome(f"h.{args.layers // 2}.mlp.c_proj.weight"),
        "lora": _lora,
        "finetune": _finetune,
    }
    print(
        "| candidate | drift (s) | ranks (s) | matrices ranked | pattern | traced peak"
        " | RssAnon peak (growth) |"
    )
    print("|---|---|---|---|---|---|---|")
    try:
        for pattern in args.pattern:
            candidate = args.out / f"{pattern}.safetensors"
            write(candidate, tensors, edits[pattern])
            for path in (base, candidate):  # warm the page cache
                with path.open("rb") as f:
                    while f.read(1 << 24):
                        pass
            run = subprocess.run(
                [sys.executable, __file__, "--measure", str(base), str(candidate)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(run.stdout)
            print(
                f"| {pattern} | {r['drift_s']} | {r['ranks_s']} | {r['matrices_ranked']}"
                f" (ranks {', '.join(r['ranks'])}) | {r['pattern']} | {r['traced_peak_mib']} MiB"
                f" | {r['anon_peak_mib']} MiB (+{r['anon_growth_mib']}) |",
                flush=True,
            )
            if not args.keep:
                candidate.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
