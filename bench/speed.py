"""Speed benchmark for issue 15: every target of "Fast by default" measured in one run.

    python bench/speed.py                       # full run (~15 min on 2 quiet cores)
    python bench/speed.py --out bench/out/speed.md
    python bench/speed.py --quick               # smoke run: small sizes, fewer repeats (~1-2 min)
    python bench/speed.py --only small,imports  # some sections only

Sections (--only): small, corpus, rescan, jobs, verify, big, imports.

- small:   one tiny torch.save checkpoint and one tiny pickle, `modelward scan FILE` (default
           settings: the results store on, in a temporary SQLite store via $MODELWARD_STORE)
           against `picklescan -p FILE`; store warm + new file, store warm + file already
           stored, --no-store, and the first run on a store that does not exist yet.
- corpus:  a mixed folder of ~200 files written by the real libraries (every format), one
           `modelward scan --no-store DIR` and one `modelward scan DIR` (fresh store) process
           against `picklescan -p DIR`.
- rescan:  the unchanged corpus again through the same store, against its fresh scan.
- jobs:    `-j 1` against `-j N` (N = os.cpu_count()) on ~600 small files and on 4 large files
           (~200 MB each, ~1 s of scanning each), with and without the store.
- verify:  `modelward verify --no-cache` of a ~600 MB signed model against model-signing's
           `model_signing verify key`; how many times modelward reads the model (rchar of
           /proc/self/io, less that of a tiny model); a cached re-verify as a whole process.
- big:     a real 4 GB torch.save checkpoint against a tiny one (needs > 10 GB free disk).
- imports: `python -X importtime -m modelward scan ...`: total, top 10 top-level imports, and
           which heavy packages are imported, for a pickle scan without and with the store and
           for the mixed corpus.

Every timing is a whole process (subprocess), after one untimed warm-up run, best and median
of N; modelward and its peer run round-robin so a burst of load hits both. The children run
without PYTHONDONTWRITEBYTECODE (users get .pyc files from pip) and the package is
byte-compiled first. Every path (fixtures, stores, digest caches) is under one temporary
folder, deleted at the end. Peers: bench/.venv-peers (bench/requirements-peers.txt);
model-signing comes with the dev extra. Prints a Markdown table for docs/benchmarks.md
("Speed: start-up, corpus, store, -j, verify"). Not a test.
"""

from __future__ import annotations

import argparse
import bz2
import dataclasses
import gzip
import io
import json
import logging
import lzma
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS_BIN = BENCH / ".venv-peers" / "bin"
SECTIONS = ("small", "corpus", "rescan", "jobs", "verify", "big", "imports")
HEAVY = (
    "sqlalchemy",
    "alembic",
    "onnx",
    "h5py",
    "numpy",
    "rich",
    "multiprocessing",
    "concurrent.futures",
    "cryptography",
)
MB = 1 << 20
#: The digest cache only records files settled this long before hashing (its racy window).
SETTLE_S = 2.2


def _bin_dir() -> Path:
    here = Path(sys.executable).parent
    return here if (here / "modelward").exists() else REPO / ".venv" / "bin"


BIN = _bin_dir()
MW = str(BIN / "modelward")
PY = str(BIN / "python")


class Payload:
    """Pickles as `os.system('true')`: written, never loaded."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("true",))


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Timing:
    times: list[float] = field(default_factory=list)
    failure: str = ""

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def cell(self, unit: str = "s") -> str:
        if self.failure:
            return f"error ({self.failure})"
        if unit == "ms":
            return f"{self.best * 1e3:.0f} ms ({self.median * 1e3:.0f})"
        return f"{self.best:.3f} s ({self.median:.3f})"


@dataclass
class Row:
    figure: str
    modelward: str
    peer: str
    ratio: str
    target: str
    met: str


class Bench:
    def __init__(self, work: Path, repeat: int, heavy_repeat: int) -> None:
        self.work = work
        self.repeat = repeat
        self.heavy_repeat = heavy_repeat
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.loads: list[str] = []
        self._serial = 0
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("MODELWARD_STORE", None)
        # Nothing of the user's: the digest cache and the default store live in `work`.
        env["MODELWARD_CACHE_DIR"] = str(work / "cache")
        env["XDG_DATA_HOME"] = str(work / "xdg")
        self.env = env
        self.warm_store = f"sqlite:///{work}/store.db"

    # environments ------------------------------------------------------------------------

    def fresh(self, name: str) -> dict[str, str]:
        """A new store URL and digest cache, not created yet."""
        self._serial += 1
        base = self.work / "fresh" / f"{name}-{self._serial}"
        base.mkdir(parents=True)
        return {
            **self.env,
            "MODELWARD_STORE": f"sqlite:///{base}/store.db",
            "MODELWARD_CACHE_DIR": str(base / "cache"),
        }

    def fresh_created(self, name: str, seed: Path) -> dict[str, str]:
        """A new store and digest cache that exist (schema created) and hold nothing of ours."""
        env = self.fresh(name)
        run([MW, "scan", str(seed)], env)
        return env

    def stored(self) -> dict[str, str]:
        return {**self.env, "MODELWARD_STORE": self.warm_store}

    # timing ------------------------------------------------------------------------------

    def time_round_robin(
        self,
        jobs: Sequence[Callable[[int], Sequence[str] | tuple[Sequence[str], dict[str, str]]]],
        repeat: int,
        warm: bool = True,
    ) -> list[Timing]:
        """Time each job `repeat` times, round-robin. A job maps the round (0 = warm-up) to
        its argv, or to (argv, env) when it needs its own environment."""
        timings = [Timing() for _ in jobs]
        for round_no in range(0 if warm else 1, repeat + 1):
            for job, timing in zip(jobs, timings, strict=True):
                if timing.failure:
                    continue
                spec = job(round_no)
                argv, env = spec if isinstance(spec, tuple) else (spec, self.env)
                seconds, code, tail = run(argv, env)
                if not completed(code, tail):
                    timing.failure = f"exit {code}"
                    print(f"FAILED {' '.join(argv)}:\n{tail}", file=sys.stderr)
                elif round_no:
                    timing.times.append(seconds)
        return timings

    def load(self, section: str) -> None:
        one, five, fifteen = os.getloadavg()
        self.loads.append(f"{section} {one:.2f}")
        print(f"[{section}] load average {one:.2f}/{five:.2f}/{fifteen:.2f}", file=sys.stderr)

    # rows --------------------------------------------------------------------------------

    def versus(
        self, figure: str, mine: Timing, peer: Timing, target: float | None, unit: str = "s"
    ) -> None:
        """Peer ÷ modelward: higher is better for modelward; `target` is the least ratio."""
        if mine.failure or peer.failure:
            ratio, met = "—", "error"
        else:
            best, median = peer.best / mine.best, peer.median / mine.median
            ratio = f"{best:.2f}× ({median:.2f}×)"
            met = _met(best >= target, median >= target) if target is not None else "—"
        wanted = f"≥ {target:g}×" if target is not None else "— (info)"
        self.rows.append(Row(figure, mine.cell(unit), peer.cell(unit), ratio, wanted, met))
        print(f"  {figure}: {mine.cell(unit)} vs {peer.cell(unit)}: {ratio}", file=sys.stderr)

    def absolute(self, figure: str, mine: Timing, limit_ms: float) -> None:
        if mine.failure:
            met = "error"
        else:
            met = _met(mine.best * 1e3 < limit_ms, mine.median * 1e3 < limit_ms)
        self.rows.append(Row(figure, mine.cell("ms"), "—", "—", f"< {limit_ms:g} ms", met))
        print(f"  {figure}: {mine.cell('ms')}", file=sys.stderr)

    def difference(self, figure: str, big: Timing, tiny: Timing, limit_ms: float | None) -> None:
        if big.failure or tiny.failure:
            diff, met = "—", "error"
        else:
            best = (big.best - tiny.best) * 1e3
            median = (big.median - tiny.median) * 1e3
            diff = f"{best:+.0f} ms ({median:+.0f})"
            met = _met(best < limit_ms, median < limit_ms) if limit_ms is not None else "—"
        wanted = f"< +{limit_ms:g} ms" if limit_ms is not None else "— (info)"
        self.rows.append(Row(figure, big.cell("ms"), tiny.cell("ms"), diff, wanted, met))
        print(f"  {figure}: {big.cell('ms')} vs {tiny.cell('ms')}: {diff}", file=sys.stderr)

    def value(self, figure: str, mine: str, peer: str, target: str, met: str) -> None:
        self.rows.append(Row(figure, mine, peer, "—", target, met))
        print(f"  {figure}: {mine} (peer {peer})", file=sys.stderr)


def _met(best: bool, median: bool) -> str:
    if best and median:
        return "yes"
    return "best only" if best else "no"


def run(
    argv: Sequence[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[float, int, str]:
    """Seconds, exit code and the tail of stdout and stderr together."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    return (
        time.perf_counter() - start,
        proc.returncode,
        proc.stdout.decode(errors="replace")[-2000:],
    )


def completed(code: int, tail: str) -> bool:
    """A run that went through: 0 clean, 1 findings; picklescan exits 2 when it could not
    parse some file (joblib files here) yet scanned the rest and printed its summary."""
    return code in (0, 1) or (code == 2 and "SCAN SUMMARY" in tail)


def warm_files(root: Path) -> int:
    total = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                while chunk := f.read(8 * MB):
                    total += len(chunk)
    return total


def picklescan(path: Path) -> list[str]:
    """`picklescan -p PATH`. Its venv has no py7zr, and picklescan's folder scan stops at the
    first 7z file it cannot open (exit 2): it skips 7z files instead, one less file to read."""
    return [str(PEERS_BIN / "picklescan"), "-p", str(path), "--exclude", r"\.7z$"]


# --- fixtures ------------------------------------------------------------------------------


def write_pickle(path: Path, i: int, protocol: int = 4, evil: bool = False) -> None:
    data: Any = {
        "name": f"model-{i}",
        "vocab": {f"tok{j}": j for j in range(20 + i % 50)},
        "layers": [(f"layer{j}", [0.5 * j] * (1 + i % 7)) for j in range(5)],
    }
    path.write_bytes(pickle.dumps([data, Payload()] if evil else data, protocol=protocol))


def write_torch(path: Path, i: int, legacy: bool = False, nbytes: int = 4096) -> None:
    import torch

    gen = torch.Generator().manual_seed(i)
    state = {
        "layer.weight": torch.randn(max(nbytes // 8, 1), generator=gen),
        "layer.bias": torch.randn(4 + i % 5, generator=gen),
        "meta": {"epoch": i, "name": f"ckpt-{i}"},
    }
    if legacy:
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(state, path)


def write_safetensors(path: Path, i: int, nbytes: int = 4096) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(i)
    tensors = {"w": rng.standard_normal(max(nbytes // 4, 1), dtype=np.float32)}
    save_file(tensors, str(path), metadata={"id": str(i)})


def write_npy(path: Path, i: int, nbytes: int = 4096) -> None:
    import numpy as np

    rng = np.random.default_rng(i)
    np.save(path, rng.standard_normal(max(nbytes // 8, 1)))


def write_onnx(path: Path, i: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(i).standard_normal(16 + i, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        f"g{i}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(w)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(w)])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, producer_name="bench"), str(path))


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def write_gguf(path: Path, i: int) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"tiny-{i}")
    writer.add_context_length(128)
    writer.add_token_list(["<s>", "</s>", "hello", "world"])
    writer.add_chat_template(CHAT_TEMPLATE)
    rng = np.random.default_rng(i)
    writer.add_tensor("blk.0.w", rng.standard_normal((4, 64), dtype=np.float32))
    writer.add_tensor("blk.0.b", np.ones(7 + i % 3, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def keras_model(i: int) -> Any:
    import keras

    return keras.Sequential(
        [
            keras.Input((8 + i % 4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )


def build_corpus(root: Path, scale: float) -> dict[str, int]:
    """Every supported format written by its real library; about 200 files at scale 1."""
    import warnings

    os.environ.setdefault("KERAS_BACKEND", "torch")
    warnings.filterwarnings("ignore")
    logging.getLogger("absl").setLevel(logging.ERROR)  # Keras' legacy-HDF5 warning
    import h5py
    import joblib
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    counts: dict[str, int] = {}

    def n(kind: str, full: int) -> range:
        k = max(1, round(full * scale))
        counts[kind] = k
        (root / kind).mkdir(parents=True, exist_ok=True)
        return range(k)

    for i in n("pickle", 40):
        write_pickle(root / "pickle" / f"p{i}.pkl", i, (0, 2, 4, 5)[i % 4], evil=i % 10 == 3)
    for i in n("torch-zip", 25):
        write_torch(root / "torch-zip" / f"t{i}.pt", i)
    for i in n("torch-legacy", 10):
        write_torch(root / "torch-legacy" / f"l{i}.bin", 100 + i, legacy=True)
    for i in n("torchscript", 3):
        scripted = torch.jit.script(torch.nn.Linear(4 + i, 2))
        scripted.save(str(root / "torchscript" / f"s{i}.pt"))  # type: ignore[no-untyped-call]
    x = np.random.default_rng(0).standard_normal((40, 4))
    y = (x[:, 0] > 0).astype(int)
    for i in n("joblib", 20):
        model: Any = LogisticRegression(C=1.0 + i).fit(x, y) if i % 2 else StandardScaler().fit(x)
        joblib.dump(model, root / "joblib" / f"j{i}.joblib", compress=3 if i % 4 == 1 else 0)
    for i in n("npy", 15):
        write_npy(root / "npy" / f"a{i}.npy", i, 1024 * (1 + i))
    for i in n("npz", 10):
        rng = np.random.default_rng(i)
        save = np.savez_compressed if i % 2 else np.savez
        save(root / "npz" / f"z{i}.npz", a=rng.standard_normal(64), b=np.arange(i + 3))
    for i in n("keras", 6):
        keras_model(i).save(root / "keras" / f"k{i}.keras")
    for i in n("keras-h5", 6):
        keras_model(i).save(root / "keras-h5" / f"k{i}.h5")
    for i in n("hdf5", 4):
        with h5py.File(root / "hdf5" / f"d{i}.h5", "w") as f:
            f.create_dataset("data", data=np.random.default_rng(i).standard_normal((32, 8)))
            f.attrs["note"] = f"dataset {i}"
    for i in n("onnx", 15):
        write_onnx(root / "onnx" / f"o{i}.onnx", i)
    for i in n("gguf", 10):
        write_gguf(root / "gguf" / f"g{i}.gguf", i)
    for i in n("safetensors", 25):
        write_safetensors(root / "safetensors" / f"s{i}.safetensors", i, 2048 * (1 + i))
    for i in n("tar.gz", 3):
        with tarfile.open(root / "tar.gz" / f"bundle{i}.tar.gz", "w:gz") as tar:
            for name, data in _bundle(i):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    for i in n("zip", 3):
        with zipfile.ZipFile(root / "zip" / f"bundle{i}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in _bundle(10 + i):
                z.writestr(name, data)
    compressors: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("gz", gzip.compress),
        ("bz2", bz2.compress),
        ("xz", lzma.compress),
    ]
    for i in n("compressed", 3):
        suffix, compress = compressors[i % 3]
        blob = pickle.dumps({"id": i, "w": list(range(50))}, protocol=4)
        (root / "compressed" / f"c{i}.pkl.{suffix}").write_bytes(compress(blob))
    try:
        import py7zr

        for i in n("7z", 1):
            with py7zr.SevenZipFile(root / "7z" / f"bundle{i}.7z", "w") as archive:
                for name, data in _bundle(20 + i):
                    archive.writestr(data, name)
    except ImportError:
        print("py7zr missing: no 7z file", file=sys.stderr)
    for i in n("pt2", 1):
        try:
            program = torch.export.export(torch.nn.Linear(4, 2 + i), (torch.randn(1, 4),))
            torch.export.save(program, str(root / "pt2" / f"e{i}.pt2"))
        except Exception as exc:  # torch.export is optional here
            counts["pt2"] = 0
            print(f"torch.export failed ({exc}): no .pt2 file", file=sys.stderr)
    for i in n("python", 2):
        (root / "python" / f"train{i}.py").write_text(
            f"import torch\n\nmodel = torch.nn.Linear(4, {i + 2})\nprint(model)\n"
        )
    for i in n("json", 3):
        (root / "json" / f"config{i}.json").write_text(
            json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64 * (i + 1)})
        )
    return counts


def _bundle(i: int) -> list[tuple[str, bytes]]:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.arange(16 + i, dtype=np.float32))
    return [
        ("model/config.json", json.dumps({"id": i}).encode()),
        ("model/weights.npy", buffer.getvalue()),
        ("model/extra.pkl", pickle.dumps({"id": i, "names": ["a", "b"]}, protocol=4)),
    ]


def build_small_folder(root: Path, files: int) -> None:
    """Many small files (1-20 KiB): pickles, torch zips, safetensors, .npy, in folders of 50."""
    kinds = ["pickle"] * 4 + ["torch"] * 3 + ["safetensors"] * 2 + ["npy"]
    for i in range(files):
        folder = root / f"batch-{i // 50:03}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = kinds[i % len(kinds)]
        nbytes = 1024 * (1 + (i * 7) % 20)
        if kind == "pickle":
            write_pickle(folder / f"{i:05}.pkl", i, evil=i % 40 == 0)
        elif kind == "torch":
            write_torch(folder / f"{i:05}.pt", i, nbytes=nbytes)
        elif kind == "safetensors":
            write_safetensors(folder / f"{i:05}.safetensors", i, nbytes)
        else:
            write_npy(folder / f"{i:05}.npy", i, nbytes)


def build_large_folder(root: Path, pieces: int) -> None:
    """Four large files whose scan reads and walks them: `pieces` arrays of 50 KB each
    (about 200 MB at 4000 pieces) in a pickle, a joblib file, a protocol-5 pickle and a
    torch checkpoint of as many small tensors (its pickle, not tensor bytes, is the work)."""
    import joblib
    import numpy as np
    import torch

    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(12_500, dtype=np.float32) for _ in range(pieces)]
    (root / "arrays.pkl").write_bytes(pickle.dumps(arrays, protocol=4))
    joblib.dump(arrays, root / "arrays.joblib")
    mixed = [{"id": i, "name": f"row{i}", "w": a} for i, a in enumerate(arrays)]
    (root / "rows.pkl").write_bytes(pickle.dumps(mixed, protocol=5))
    torch.save(
        {f"layer{i}.weight": torch.from_numpy(a) for i, a in enumerate(arrays)}, root / "state.pt"
    )


def build_big_checkpoint(path: Path, nbytes: int) -> None:
    """A real torch.save zip of one float32 tensor of `nbytes`, streamed from a zero-filled
    memmap so the builder needs no `nbytes` of RAM (the checkpoint itself is a real file)."""
    import numpy as np
    import torch

    source = path.with_suffix(".src")
    with source.open("wb") as f:
        f.truncate(nbytes)
    try:
        array = np.memmap(source, dtype=np.float32, mode="r+", shape=(nbytes // 4,))
        torch.save({"w": torch.from_numpy(array), "step": 1}, path)
        del array
    finally:
        source.unlink()


def build_model(root: Path, nbytes: int) -> int:
    """A model folder: one safetensors file of about `nbytes` and a config."""
    import numpy as np
    from safetensors.numpy import save_file

    root.mkdir(parents=True)
    rng = np.random.default_rng(3)
    per = nbytes // 4 // 4
    save_file(
        {f"w{i}": rng.standard_normal(per, dtype=np.float32) for i in range(4)},
        str(root / "model.safetensors"),
    )
    (root / "config.json").write_text(json.dumps({"hidden_size": 64}))
    return sum(p.stat().st_size for p in root.iterdir())


# --- sections ------------------------------------------------------------------------------


def section_small(b: Bench, fixtures: Path) -> None:
    b.load("small")
    builders: list[tuple[str, str, Callable[[Path, int], None]]] = [
        ("tiny torch.save", "tiny.pt", lambda p, i: write_torch(p, 9000 + i, nbytes=256)),
        ("tiny pickle", "tiny.pkl", lambda p, i: write_pickle(p, 9000 + i)),
    ]
    for label, name, builder in builders:
        folder = fixtures / "small" / name
        folder.mkdir(parents=True)
        # One distinct file per run (and the warm-up): each is new to the store when scanned.
        variants = [folder / f"{i}-{name}" for i in range(b.repeat + 1)]
        for i, variant in enumerate(variants):
            builder(variant, i)
        time.sleep(SETTLE_S)
        warm_files(folder)
        small_file(b, label, variants)


def small_file(b: Bench, label: str, variants: list[Path]) -> None:
    one, store = variants[0], b.stored()
    # Store warm (exists, schema current), the file new to it: a fresh download.
    mine, peer = b.time_round_robin(
        [
            lambda r: ([MW, "scan", str(variants[r])], store),
            lambda r: picklescan(variants[r]),
        ],
        b.repeat,
    )
    b.versus(f"{label}: `scan FILE`, store on, new file vs `picklescan -p FILE`", mine, peer, 1.0)
    # The first file again (the warm-up run stored it): its result comes from the store.
    mine, peer = b.time_round_robin(
        [lambda r: ([MW, "scan", str(one)], store), lambda r: picklescan(one)], b.repeat
    )
    b.versus(f"{label}: `scan FILE`, store on, file already stored vs picklescan", mine, peer, 1.0)
    history = subprocess.run(
        [MW, "history", str(one)], env=store, capture_output=True, text=True, check=False
    )
    if " cached " not in history.stdout:
        b.notes.append(f"{label}: `modelward history` shows no cached scan of the stored file")
    mine, peer = b.time_round_robin(
        [lambda r: [MW, "scan", "--no-store", str(one)], lambda r: picklescan(one)], b.repeat
    )
    b.versus(f"{label}: `scan --no-store FILE` vs picklescan", mine, peer, None)
    # The first run of all: neither the store file nor the digest cache exists yet.
    mine, peer = b.time_round_robin(
        [lambda r: ([MW, "scan", str(one)], b.fresh("cold")), lambda r: picklescan(one)],
        b.repeat,
    )
    b.versus(f"{label}: `scan FILE`, first run, store created vs picklescan", mine, peer, None)


def section_corpus(b: Bench, corpus: Path, seed: Path, want: set[str]) -> None:
    b.load("corpus")
    repeat = b.heavy_repeat
    if "corpus" in want:
        mine, peer = b.time_round_robin(
            [lambda r: [MW, "scan", "--no-store", str(corpus)], lambda r: picklescan(corpus)],
            repeat,
        )
        b.versus("mixed corpus: `scan --no-store DIR` vs `picklescan -p DIR`", mine, peer, 1.0)
    fresh, rescan, peer = fresh_and_rescan(b, corpus, seed, "corpus", repeat, picklescan(corpus))
    if "corpus" in want:
        b.versus("mixed corpus: `scan DIR`, fresh store vs `picklescan -p DIR`", fresh, peer, 1.0)
    if "rescan" in want:
        b.versus(
            "re-scan of the unchanged corpus through the store vs its fresh scan",
            rescan,
            fresh,
            10.0,
        )


def fresh_and_rescan(
    b: Bench, folder: Path, seed: Path, key: str, repeat: int, peer_argv: list[str] | None = None
) -> tuple[Timing, Timing, Timing]:
    """A scan of `folder` through a fresh store (created, empty of these files; fresh digest
    cache), then the unchanged folder again through that store; and the peer in between."""
    fresh, rescan, peer = Timing(), Timing(), Timing()
    for round_no in range(repeat + 1):
        env = b.fresh_created(key, seed)
        steps = [(fresh, [MW, "scan", str(folder)], env), (rescan, [MW, "scan", str(folder)], env)]
        if peer_argv is not None:
            steps.append((peer, peer_argv, b.env))
        for timing, argv, e in steps:
            seconds, code, tail = run(argv, e)
            if not completed(code, tail):
                timing.failure = f"exit {code}"
                print(f"FAILED {' '.join(argv)}:\n{tail}", file=sys.stderr)
            elif round_no:
                timing.times.append(seconds)
        if fresh.failure or rescan.failure:
            break
    return fresh, rescan, peer


def section_jobs(b: Bench, many: Path, large: Path, seed: Path) -> None:
    cores = os.cpu_count() or 1
    b.load("jobs")
    if cores < 2:
        b.notes.append("jobs: one core, -j N not measured")
        return
    target = round(0.8 * cores, 2)
    for label, folder in (("many small files", many), ("4 large files", large)):
        jobs_pair(b, label, folder, seed, cores, target)
    # Re-scans of folders whose scan is more than start-up (the mixed corpus is mostly that).
    for label, folder in (("many small files", many), ("4 large files", large)):
        fresh, rescan, _ = fresh_and_rescan(b, folder, seed, "rescan", b.heavy_repeat)
        b.versus(f"re-scan of the {label} through the store vs its fresh scan", rescan, fresh, 10.0)


def jobs_pair(b: Bench, label: str, folder: Path, seed: Path, cores: int, target: float) -> None:
    def no_store(jobs: int) -> Callable[[int], list[str]]:
        return lambda r: [MW, "scan", "--no-store", "-j", str(jobs), str(folder)]

    def fresh_store(jobs: int) -> Callable[[int], tuple[list[str], dict[str, str]]]:
        return lambda r: ([MW, "scan", "-j", str(jobs), str(folder)], b.fresh_created("j", seed))

    mine, one = b.time_round_robin([no_store(cores), no_store(1)], b.heavy_repeat)
    b.versus(f"{label}: `scan --no-store -j {cores}` vs `-j 1`", mine, one, target)
    mine, one = b.time_round_robin([fresh_store(cores), fresh_store(1)], b.heavy_repeat)
    b.versus(f"{label}: `scan -j {cores}`, fresh store vs `-j 1`", mine, one, target)


#: Runs a console script in-process and writes its /proc/self/io `rchar` to argv[1] at exit.
RCHAR = """
import atexit, runpy, sys
out = sys.argv[1]
def dump():
    with open('/proc/self/io') as f:
        rchar = next(line.split()[1] for line in f if line.startswith('rchar:'))
    with open(out, 'w') as f:
        f.write(rchar)
atexit.register(dump)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def rchar(b: Bench, argv: list[str], env: dict[str, str]) -> int | None:
    out = b.work / "rchar.txt"
    out.unlink(missing_ok=True)
    _, code, tail = run([PY, "-c", RCHAR, str(out), *argv], env)
    if code != 0 or not out.exists():
        print(f"FAILED rchar of {' '.join(argv)}:\n{tail}", file=sys.stderr)
        return None
    return int(out.read_text())


def section_verify(b: Bench, fixtures: Path, model_bytes: int) -> None:
    b.load("verify")
    ms_cli = BIN / "model_signing"
    model, tiny = fixtures / "verify" / "model", fixtures / "verify" / "tiny"
    size = build_model(model, model_bytes)
    build_model(tiny, 4096)
    key = fixtures / "verify" / "key.pem"
    pub = fixtures / "verify" / "key.pub.pem"
    sig, tiny_sig = fixtures / "verify" / "model.sig", fixtures / "verify" / "tiny.sig"
    for argv in (
        [MW, "keygen", "--out", str(key)],
        [MW, "sign", str(model), "--key", str(key), "--signature", str(sig), "--no-cache"],
        [MW, "sign", str(tiny), "--key", str(key), "--signature", str(tiny_sig), "--no-cache"],
    ):
        _, code, tail = run(argv, b.env)
        if code != 0:
            b.notes.append(f"verify: `{' '.join(argv[1:3])}` failed: {tail.strip()[-200:]}")
            return
    time.sleep(SETTLE_S)
    warm_files(fixtures / "verify")

    def mw_verify(path: Path, signature: Path, *extra: str) -> list[str]:
        return [MW, "verify", str(path), "--key", str(pub), "--signature", str(signature), *extra]

    def ms_verify(path: Path, signature: Path) -> list[str]:
        return [
            str(ms_cli),
            "verify",
            "key",
            str(path),
            "--signature",
            str(signature),
            "--public_key",
            str(pub),
        ]

    store = b.stored()
    mb = f"{size / 1e6:.0f} MB"
    mine, peer = b.time_round_robin(
        [lambda r: (mw_verify(model, sig, "--no-cache"), store), lambda r: ms_verify(model, sig)],
        b.heavy_repeat,
    )
    b.versus(
        f"`verify --no-cache` of a signed {mb} model (store on) vs `model_signing verify`",
        mine,
        peer,
        1.0,
    )
    mine, peer = b.time_round_robin(
        [
            lambda r: mw_verify(model, sig, "--no-cache", "--no-store"),
            lambda r: ms_verify(model, sig),
        ],
        b.heavy_repeat,
    )
    b.versus(
        f"`verify --no-cache --no-store`, {mb} model vs `model_signing verify`", mine, peer, None
    )

    # Bytes read: rchar of the process less that of the same command on a 4 KB model.
    reads: list[float | None] = []
    for big_argv, tiny_argv in (
        (mw_verify(model, sig, "--no-cache"), mw_verify(tiny, tiny_sig, "--no-cache")),
        (ms_verify(model, sig), ms_verify(tiny, tiny_sig)),
    ):
        whole, base = rchar(b, big_argv, store), rchar(b, tiny_argv, store)
        reads.append(None if whole is None or base is None else (whole - base) / size)
    mine_reads, peer_reads = (f"{r:.2f}× the model" if r is not None else "error" for r in reads)
    met = "error" if reads[0] is None else ("yes" if reads[0] <= 1.05 else "no")
    b.value(
        "`verify --no-cache` (store on): bytes read (rchar) ÷ model size",
        mine_reads,
        peer_reads,
        "≤ 1.05× (read once)",
        met,
    )

    # Cached re-verify: store on, digest cache warm (the warm-up run fills it).
    (cached,) = b.time_round_robin([lambda r: (mw_verify(model, sig), store)], b.repeat)
    b.absolute(f"cached re-verify of the unchanged {mb} model, whole process", cached, 150)


def section_big(b: Bench, fixtures: Path, seed: Path, big_bytes: int) -> None:
    b.load("big")
    folder = fixtures / "big"
    folder.mkdir()
    big, tiny = folder / "big.pt", folder / "tiny.pt"
    start = time.perf_counter()
    build_big_checkpoint(big, big_bytes)
    write_torch(tiny, 1, nbytes=256)
    print(
        f"  built {big.stat().st_size / 1e9:.2f} GB checkpoint in "
        f"{time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    time.sleep(SETTLE_S)
    warm_files(folder)
    gb = f"{big.stat().st_size / 1e9:.1f} GB"
    try:
        mine, small = b.time_round_robin(
            [
                lambda r: [MW, "scan", "--no-store", str(big)],
                lambda r: [MW, "scan", "--no-store", str(tiny)],
            ],
            b.repeat,
        )
        b.difference(f"{gb} checkpoint vs tiny one: `scan --no-store`", mine, small, 50)
        store = b.stored()
        mine, small = b.time_round_robin(
            [lambda r: ([MW, "scan", str(big)], store), lambda r: ([MW, "scan", str(tiny)], store)],
            b.repeat,
        )
        b.difference(
            f"{gb} checkpoint vs tiny one: `scan`, store on, already stored", mine, small, 50
        )
        mine, small = b.time_round_robin(
            [
                lambda r: ([MW, "scan", str(big)], b.fresh_created("big", seed)),
                lambda r: ([MW, "scan", str(tiny)], b.fresh_created("big", seed)),
            ],
            b.heavy_repeat,
            warm=False,
        )
        b.difference(
            f"{gb} checkpoint vs tiny one: `scan`, first scan (file hashed for the store)",
            mine,
            small,
            None,
        )
    finally:
        shutil.rmtree(folder)


# --- import time ---------------------------------------------------------------------------


@dataclass
class ImportRun:
    label: str
    total_ms: float = 0.0
    top: list[tuple[str, float]] = field(default_factory=list)
    heavy: dict[str, float] = field(default_factory=dict)
    failure: str = ""


def importtime(
    label: str, argv: Callable[[int], list[str]], env: dict[str, str], repeat: int
) -> ImportRun:
    """`python -X importtime -m modelward ARGV`, after one untimed run; the run with the least
    total is kept. `argv` maps the run (0 = warm-up) to the arguments."""
    best: ImportRun | None = None
    for round_no in range(repeat + 1):
        proc = subprocess.run(
            [PY, "-X", "importtime", "-m", "modelward", *argv(round_no)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        text = proc.stderr.decode(errors="replace")
        if proc.returncode not in (0, 1):
            return ImportRun(label, failure=f"exit {proc.returncode}: {text[-300:]}")
        result = ImportRun(label)
        for line in text.splitlines():
            if not line.startswith("import time:") or "imported package" in line:
                continue
            self_us, cumulative_us, name_field = line.split(":", 1)[1].split("|", 2)
            name = name_field.rstrip()
            level = (len(name) - len(name.lstrip()) - 1) // 2
            name = name.strip()
            self_ms, cumulative_ms = int(self_us) / 1e3, int(cumulative_us) / 1e3
            result.total_ms += self_ms
            if level == 0:
                result.top.append((name, cumulative_ms))
            for package in HEAVY:
                if name == package or name.startswith(package + "."):
                    result.heavy[package] = result.heavy.get(package, 0.0) + self_ms
        result.top.sort(key=lambda item: -item[1])
        result.top = result.top[:10]
        if round_no and (best is None or result.total_ms < best.total_ms):
            best = result
    assert best is not None
    return best


def section_imports(b: Bench, fixtures: Path, corpus: Path | None, repeat: int) -> list[str]:
    b.load("imports")
    folder = fixtures / "imports"
    folder.mkdir()
    tiny = [folder / f"{i}-tiny.pkl" for i in range(repeat + 1)]
    for i, path in enumerate(tiny):
        write_pickle(path, 7000 + i)
    runs = [
        importtime(
            "(0) `scan --no-store tiny.pkl`",
            lambda r: ["scan", "--no-store", str(tiny[0])],
            b.env,
            repeat,
        ),
        # A pickle new to the (existing, newest-schema) store: scanned and recorded.
        importtime(
            "(i) `scan tiny.pkl`, store on, file new to it",
            lambda r: ["scan", str(tiny[r])],
            b.stored(),
            repeat,
        ),
    ]
    if corpus is not None:
        runs.append(
            importtime(
                "(ii) `scan --no-store` mixed corpus",
                lambda r: ["scan", "--no-store", str(corpus)],
                b.env,
                repeat,
            )
        )
    lines = [
        "Import time (`python -X importtime -m modelward ...`, sum of `self`; least of "
        f"{repeat} runs):",
        "",
        "| command | total imports | top 10 top-level imports (cumulative ms) |",
        "|---|---:|---|",
    ]
    for r in runs:
        if r.failure:
            lines.append(f"| {r.label} | error | {r.failure} |")
            continue
        top = ", ".join(f"{name} {ms:.0f}" for name, ms in r.top)
        lines.append(f"| {r.label} | {r.total_ms:.0f} ms | {top} |")
    lines += [
        "",
        "Heavy packages imported (ms: `self` time of the package's own modules, not of its"
        " dependencies; no = not imported):",
        "",
        "| package | " + " | ".join(r.label for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for name in HEAVY:
        cells = [
            "error" if r.failure else (f"{r.heavy[name]:.0f}" if name in r.heavy else "no")
            for r in runs
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for text in lines:
        print(f"  {text}", file=sys.stderr)
    return lines


# --- main ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    repeat: int
    heavy_repeat: int
    corpus_scale: float
    many_files: int
    large_pieces: int
    model_bytes: int
    big_bytes: int
    import_repeat: int


FULL = Sizes(5, 3, 1.0, 600, 4000, 600_000_000, 4 << 30, 3)
QUICK = Sizes(2, 1, 0.25, 120, 400, 60_000_000, 256 << 20, 1)


def markdown(b: Bench, sizes: Sizes, quick: bool, header: list[str], extra: list[str]) -> str:
    lines = [*header, ""]
    lines += [
        "| figure | modelward | peer | ratio | target | met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in b.rows:
        lines.append(
            f"| {r.figure} | {r.modelward} | {r.peer} | {r.ratio} | {r.target} | {r.met} |"
        )
    lines += [
        "",
        f"Times: best of {sizes.repeat} (start-up rows, cached re-verify, big checkpoint) or "
        f"{sizes.heavy_repeat} (folders, verify), median in brackets, after one untimed "
        "warm-up run. Ratio: the peer's (or the baseline's) time ÷ modelward's, best (median); "
        "above 1 modelward is faster. Rows marked `— (info)` have no target.",
    ]
    if quick:
        lines.append("**Smoke run (`--quick`): small sizes and few repeats, not the figures.**")
    lines += [f"- {note}" for note in b.notes]
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke)")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help="comma-separated sections: " + ", ".join(SECTIONS),
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    parser.add_argument("--repeat", type=int, help="override the number of timed runs")
    args = parser.parse_args(argv)
    want = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = want - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    if args.repeat:
        sizes = dataclasses.replace(sizes, repeat=args.repeat, heavy_repeat=args.repeat)
    for tool in (Path(MW), PEERS_BIN / "picklescan", BIN / "model_signing"):
        if not tool.exists():
            print(f"missing {tool}: see the docstring", file=sys.stderr)
            return 2

    work = Path(tempfile.mkdtemp(prefix="mw-speed-"))
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    b = Bench(work, sizes.repeat, sizes.heavy_repeat)
    extra: list[str] = []
    try:
        fixtures = work / "fixtures"
        fixtures.mkdir()
        seed = fixtures / "seed.pkl"
        seed.write_bytes(pickle.dumps({"seed": 1}))

        # .pyc caches: byte-compile the package and the peers as pip would, then warm runs.
        package = subprocess.run(
            [PY, "-c", "import modelward, os; print(os.path.dirname(modelward.__file__))"],
            env=b.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        run([PY, "-m", "compileall", "-q", package], b.env)
        run([MW, "--version"], b.env)
        run([MW, "scan", str(seed)], b.stored())  # the warm store: created, newest schema
        run(picklescan(seed), b.env)

        corpus = fixtures / "corpus"
        if want & {"corpus", "rescan", "imports"}:
            start = time.perf_counter()
            counts = build_corpus(corpus, sizes.corpus_scale)
            total = warm_files(corpus)
            files = sum(1 for p in corpus.rglob("*") if p.is_file())
            print(
                f"corpus: {files} files, {total / MB:.1f} MiB, built in "
                f"{time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
            report = work / "corpus.json"
            run([MW, "scan", "--no-store", "-f", "json", "-o", str(report), str(corpus)], b.env)
            formats: dict[str, int] = {}
            if report.exists():
                for result in json.loads(report.read_text())["results"]:
                    formats[result.get("format", "?")] = (
                        formats.get(result.get("format", "?"), 0) + 1
                    )
            b.notes.append(
                f"mixed corpus: {files} files, {total / MB:.1f} MiB, written as "
                + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
                + "; modelward detects "
                + ", ".join(f"{k} {v}" for k, v in sorted(formats.items()))
            )
        many, large = fixtures / "many", fixtures / "large"
        if "jobs" in want:
            build_small_folder(many, sizes.many_files)
            build_large_folder(large, sizes.large_pieces)
            sizes_mb = ", ".join(
                f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in sorted(large.iterdir())
            )
            b.notes.append(
                f"-j: {sizes.many_files} small files (1-20 KiB: pickle, torch, "
                f"safetensors, npy); 4 large files: {sizes_mb}"
            )
        time.sleep(SETTLE_S)
        warm_files(fixtures)

        if "small" in want:
            section_small(b, fixtures)
        if want & {"corpus", "rescan"}:
            section_corpus(b, corpus, seed, want)
        if "jobs" in want:
            section_jobs(b, many, large, seed)
        if "verify" in want:
            free = shutil.disk_usage(work).free
            if free > 3 * sizes.model_bytes:
                section_verify(b, fixtures, sizes.model_bytes)
            else:
                b.notes.append(f"verify: skipped, {free / 1e9:.1f} GB free")
        if "big" in want:
            free = shutil.disk_usage(work).free
            if free > max(10 << 30, 3 * sizes.big_bytes):
                section_big(b, fixtures, seed, sizes.big_bytes)
            else:
                b.notes.append(f"big checkpoint: skipped, only {free / 1e9:.1f} GB free")
        if "imports" in want:
            extra = section_imports(
                b, fixtures, corpus if corpus.exists() else None, sizes.import_repeat
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load_after = os.getloadavg()
    header = [
        f"Run {started}: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, modelward {_version()}"
        f"{' (--quick smoke run)' if args.quick else ''}.",
        "Load average (1/5/15 min): before "
        + "/".join(f"{x:.2f}" for x in load_before)
        + ", after "
        + "/".join(f"{x:.2f}" for x in load_after)
        + "; 1-min load at each section: "
        + ", ".join(b.loads)
        + ".",
    ]
    text = markdown(b, sizes, args.quick, header, extra)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"(written to {args.out})", file=sys.stderr)
    return 0


def _version() -> str:
    proc = subprocess.run([MW, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip().split()[-1] if proc.stdout.strip() else "?"


if __name__ == "__main__":
    sys.exit(main())
