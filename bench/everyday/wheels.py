"""Collect the model and test-data files that installed PyPI wheels ship.

Runs inside bench/.venv-everyday: every file an installed distribution lists in its RECORD
whose name looks like a model or data file is copied to `<corpus>/wheels/<dist>/<path>`
(files over `MAX_BYTES` are left out) and added to `manifest.json`.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import json
import shutil
from pathlib import Path
from typing import Any

PATTERNS = [
    "*.pkl",
    "*.pickle",
    "*.joblib",
    "*.pt",
    "*.pth",
    "*.bin",
    "*.npy",
    "*.npz",
    "*.h5",
    "*.hdf5",
    "*.keras",
    "*.onnx",
    "*.gguf",
    "*.safetensors",
    "*.ckpt",
    "*.msgpack",
    "*.mat",
]
PATTERNS += [f"{p}.{c}" for p in PATTERNS for c in ("gz", "bz2", "xz")]
MAX_BYTES = 50 * 1024 * 1024
#: Where a wheel ships executables, not data: a `.bin` here is a program.
NOT_DATA = ("/bin/", "bin/")


def wanted(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1].lower()
    return any(fnmatch.fnmatch(name, p) for p in PATTERNS) and not rel.startswith("../")


def collect(root: Path) -> dict[str, Any]:
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    files = [f for f in manifest["files"] if f["package"] != "wheels"]
    target = root / "wheels"
    shutil.rmtree(target, ignore_errors=True)
    count = skipped = 0
    seen: set[Path] = set()
    for dist in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
        name = dist.metadata["Name"].lower().replace("_", "-")
        for entry in dist.files or []:
            rel = entry.as_posix()
            if not wanted(rel) or rel.startswith(NOT_DATA):
                continue
            if "/" not in rel and rel.endswith(".pth"):
                continue  # a site-packages path-configuration file, not a PyTorch file
            source = Path(str(dist.locate_file(entry))).resolve()
            if source in seen or not source.is_file():
                continue
            seen.add(source)
            if source.stat().st_size > MAX_BYTES:
                skipped += 1
                continue
            dest = target / name / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            files.append(
                {
                    "file": f"wheels/{name}/{rel}",
                    "package": "wheels",
                    "how": f"shipped in the {name} {dist.version} wheel",
                }
            )
            count += 1
    manifest["files"] = files
    manifest["packages"]["wheels"] = {
        "status": "built",
        "reason": "",
        "files": count,
        "version": "",
        "notes": [f"{skipped} files over {MAX_BYTES >> 20} MiB left out"] if skipped else [],
    }
    manifest_path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    print(f"wheels: {count} files copied, {skipped} over {MAX_BYTES >> 20} MiB left out")
    return manifest
