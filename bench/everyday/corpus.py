"""Write the everyday corpus: one folder per package, files written the way its users write them.

Runs inside bench/.venv-everyday (see bench/requirements-everyday.txt), normally through
`python bench/everyday.py --build`. Each builder writes into `<corpus>/<package>/` through a
`Package` handle that records every file in `manifest.json` with how it was written. A builder
whose package does not import, or that fails half-way, is reported as skipped with the reason;
the files it wrote before failing stay (and stay in the manifest).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Builders in the order they run: (package folder, function).
BUILDERS: list[tuple[str, Callable[[Package], None]]] = []

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def builder(package: str) -> Callable[[Callable[[Package], None]], Callable[[Package], None]]:
    def register(func: Callable[[Package], None]) -> Callable[[Package], None]:
        BUILDERS.append((package, func))
        return func

    return register


@dataclass
class Entry:
    file: str
    package: str
    how: str


@dataclass
class Package:
    """Where one package's files go, and the record of what was written."""

    root: Path
    name: str
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.root / self.name

    def path(self, name: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, name: str, how: str) -> None:
        path = self.folder / name
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = sub.relative_to(self.folder).as_posix()
                self.entries.append(Entry(f"{self.name}/{rel}", self.name, how))
        elif path.exists():
            self.entries.append(Entry(f"{self.name}/{name}", self.name, how))

    @contextlib.contextmanager
    def attempt(self, what: str) -> Iterator[None]:
        """One variant that may fail (a protocol the object refuses): note it, go on."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except Exception as exc:  # a builder variant failing is a note
            self.notes.append(f"{what}: {type(exc).__name__}: {str(exc)[:160]}")

    def write(self, name: str, how: str, func: Callable[[Path], object]) -> None:
        path = self.path(name)
        with self.attempt(name):
            try:
                func(path)
            except BaseException:
                path.unlink(missing_ok=True)  # a refused variant leaves no half-written file
                raise
            self.record(name, how)

    def pickles(self, stem: str, obj: object, what: str, protocols: range = PROTOCOLS) -> None:
        """`pickle.dump(obj, f, protocol=p)` for every protocol the object allows."""
        for proto in protocols:
            name = f"{stem}.p{proto}.pkl"

            def dump(path: Path, proto: int = proto) -> None:
                with path.open("wb") as stream:
                    pickle.dump(obj, stream, protocol=proto)

            self.write(name, f"pickle.dump({what}, protocol={proto})", dump)

    def joblib(self, stem: str, obj: object, what: str, compress: tuple[Any, ...] = (0, 3)) -> None:
        import joblib

        for level in compress:
            suffix = "" if level == 0 else f".{level[0] if isinstance(level, tuple) else 'z'}"
            name = f"{stem}.joblib{suffix}"
            self.write(
                name,
                f"joblib.dump({what}, compress={level!r})",
                lambda p, level=level: joblib.dump(obj, p, compress=level),
            )

    def torch_save(self, name: str, obj: object, what: str, **kwargs: Any) -> None:
        import torch

        extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
        self.write(name, f"torch.save({what}{extra})", lambda p: torch.save(obj, p, **kwargs))


def build(root: Path, only: set[str] | None = None) -> dict[str, Any]:
    """Run every builder (or those in `only`); write and return the manifest."""
    from everyday import builders_data, builders_other, builders_torch  # noqa: F401 - registers

    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    previous: dict[str, Any] = {"files": [], "packages": {}}
    if only and manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
    files = [f for f in previous["files"] if not only or f["package"] not in only]
    packages = {k: v for k, v in previous["packages"].items() if not only or k not in only}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, func in BUILDERS:
        if only and name not in only:
            continue
        pkg = Package(root, name)
        shutil.rmtree(pkg.folder, ignore_errors=True)
        start = time.monotonic()
        status = "built"
        reason = ""
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                func(pkg)
        except ImportError as exc:
            status, reason = "skipped", f"not installed: {exc}"
        except Exception as exc:  # report and go on with the next package
            status, reason = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
            traceback.print_exc(limit=3)
        took = time.monotonic() - start
        print(f"{name:24} {status:8} {len(pkg.entries):4} files {took:6.1f} s {reason}", flush=True)
        for note in pkg.notes:
            print(f"    variant skipped: {note}")
        files += [vars(e) for e in pkg.entries]
        packages[name] = {
            "status": status,
            "reason": reason,
            "files": len(pkg.entries),
            "version": _version(name),
            "notes": pkg.notes,
        }
    manifest = {
        "python": sys.version.split()[0],
        "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "files": files,
        "packages": packages,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


DISTS = {
    "sklearn": "scikit-learn",
    "torch_geometric": "torch-geometric",
    "sentence_transformers": "sentence-transformers",
    "imblearn": "imbalanced-learn",
    "category_encoders": "category-encoders",
}


def _version(name: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(DISTS.get(name, name))
    except md.PackageNotFoundError:
        return ""


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="write the everyday-files corpus")
    parser.add_argument("root", type=Path)
    parser.add_argument("--only", default="", help="comma-separated packages to rebuild")
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheel-file collection")
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(","))) or None
    manifest = build(args.root, only)
    if not args.no_wheels and (only is None or "wheels" in only):
        from everyday import wheels

        manifest = wheels.collect(args.root)
    total = len(manifest["files"])
    built = sum(v["status"] == "built" for v in manifest["packages"].values())
    print(f"{total} files from {built} packages in {args.root}")
    return 0


if __name__ == "__main__":
    # Run as `python -m everyday.corpus` from bench/: use the registry the builders import.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from everyday.corpus import main as registered_main

    sys.exit(registered_main())
