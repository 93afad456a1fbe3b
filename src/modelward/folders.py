"""Checks on a Hugging Face model folder as a whole, beyond what each file says alone.

`from_pretrained` reads a folder, not a file: `config.json` can make it import
Python modules from the folder or from another repository (`auto_map`,
`trust_remote_code`), `tokenizer_config.json` carries a Jinja chat template, and
a cache snapshot is made of symlinks into `../../blobs/`. Every file is still
scanned by its own format in the normal walk (`.py` files by the
`python-source` scanner); this module adds one `hf-model-folder` result per
model folder for what only the folder shows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from modelward.config import ScanConfig
from modelward.findings import Location, ScanResult, Severity
from modelward.formats.base import Blob, ScanAborted, ScanContext
from modelward.formats.jinja_template import scan_chat_template

FOLDER_FORMAT = "hf-model-folder"

#: JSON files `from_pretrained` reads whose `auto_map` can name code to import.
AUTO_MAP_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
)
#: Weight file suffixes; a folder with `config.json` and one of them is a model folder.
WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"}
    | {".h5", ".keras", ".onnx", ".gguf", ".msgpack", ".npz", ".tflite"}
)
#: Weights stored as pickles (directly or inside a PyTorch zip): loading them can run code.
PICKLE_WEIGHT_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})
#: A config JSON bigger than this is not parsed (real ones are a few KiB; tokenizers are separate).
MAX_CONFIG_BYTES = 16 * 1024**2
#: Hugging Face cache entries: `<kind>--org--name/snapshots/<revision>/`.
CACHE_PREFIXES = ("models--", "datasets--", "spaces--")


def model_folders(files: Iterable[Path]) -> Iterator[tuple[Path, list[Path]]]:
    """Each folder among `files` that holds a model config and weights (or a tokenizer).

    Yields the folder and the scanned files directly inside it, in the order given.
    """
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, []).append(path)
    for folder, members in by_folder.items():
        names = {p.name for p in members}
        if "config.json" in names and (
            "tokenizer_config.json" in names
            or any(p.suffix.lower() in WEIGHT_SUFFIXES for p in members)
        ):
            yield folder, members


def scan_model_folders(files: Iterable[Path], config: ScanConfig) -> list[ScanResult]:
    """One `hf-model-folder` result per model folder among `files`."""
    return [scan_model_folder(folder, members, config) for folder, members in model_folders(files)]


def scan_model_folder(folder: Path, members: list[Path], config: ScanConfig) -> ScanResult:
    """Folder-level findings: custom code, chat templates, pickle weights, escaping symlinks."""
    start = time.monotonic()
    result = ScanResult(path=str(folder), format=FOLDER_FORMAT)
    ctx = ScanContext(
        config=config,
        result=result,
        dispatch=_no_members,
        deadline=start + config.limits.max_seconds_per_file,
    )
    try:
        _check_folder(folder, members, ctx)
    except ScanAborted as exc:
        ctx.report(exc.rule_id, Severity.MEDIUM, Location(str(folder)), exc.message)
    except Exception as exc:  # as in `dispatch`: a bug on hostile input must not end the run
        ctx.report(
            "MW-SCAN-ERROR",
            Severity.MEDIUM,
            Location(str(folder)),
            "folder checks failed on this input; it may be malformed or crafted to evade scanning",
            evidence=f"{type(exc).__name__}: {exc}"[:500],
        )
    result.bytes_read = ctx.read_counter[0]
    result.seconds = time.monotonic() - start
    return result


def _check_folder(folder: Path, members: list[Path], ctx: ScanContext) -> None:
    names = {p.name: p for p in members}
    for name in AUTO_MAP_FILES:
        if name in names:
            data = _read_json(names[name], ctx)
            if data is not None:
                _check_auto_map(data.get("auto_map"), names[name], folder, ctx)
                if name == "tokenizer_config.json":
                    _check_templates(data.get("chat_template"), names[name], ctx)
    for name in ("chat_template.jinja", "chat_template.json"):
        if name in names:
            _check_template_file(names[name], ctx)
    _check_pickle_weights(members, folder, ctx)
    _check_symlinks(folder, ctx)


def _no_members(blob: Blob, ctx: ScanContext) -> str:
    """Folder checks read known JSON and text files; they never dispatch members."""
    raise AssertionError(f"folder checks do not scan members ({blob.location})")


def _read_text(path: Path, ctx: ScanContext) -> str | None:
    location = Location(str(path))
    try:
        with ctx.open(Blob.from_file(path), limit=MAX_CONFIG_BYTES + 1) as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        ctx.result.errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        return None
    if len(raw) > MAX_CONFIG_BYTES:
        ctx.report(
            "MW-HF-CONFIG-MALFORMED",
            Severity.MEDIUM,
            location,
            f"file is over {MAX_CONFIG_BYTES} bytes; not parsed, so code and templates it may"
            " name are not checked",
        )
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _malformed(location, ctx, exc)
        return None


def _read_json(path: Path, ctx: ScanContext) -> dict[str, Any] | None:
    text = _read_text(path, ctx)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        _malformed(Location(str(path)), ctx, exc)
        return None
    if not isinstance(data, dict):
        _malformed(Location(str(path)), ctx, TypeError("top level is not a JSON object"))
        return None
    return data


def _malformed(location: Location, ctx: ScanContext, exc: Exception) -> None:
    ctx.report(
        "MW-HF-CONFIG-MALFORMED",
        Severity.MEDIUM,
        location,
        "configuration file does not parse; transformers may still read parts of it,"
        " so custom code and templates it may name are not checked",
        evidence=f"{type(exc).__name__}: {exc}"[:300],
    )


def auto_map_references(auto_map: object) -> list[str]:
    """Every class reference in an `auto_map` (values are strings or lists with nulls)."""
    if not isinstance(auto_map, dict):
        return []
    refs: list[str] = []
    for value in auto_map.values():
        items = value if isinstance(value, list) else [value]
        refs.extend(item for item in items if isinstance(item, str) and item)
    return refs


def _check_auto_map(auto_map: object, source: Path, folder: Path, ctx: ScanContext) -> None:
    location = Location(str(source))
    if auto_map is not None and not isinstance(auto_map, dict):
        _malformed(location, ctx, TypeError("auto_map is not an object"))
        return
    local: dict[str, bool] = {}
    for ref in auto_map_references(auto_map):
        # transformers: "[org/repo--]module.Class"; the module is a file of that repo.
        repo, _, class_ref = ref.rpartition("--")
        if repo:
            ctx.report(
                "MW-HF-REMOTE-CODE",
                Severity.HIGH,
                location,
                f"auto_map imports code from another repository ({repo}); with"
                " trust_remote_code it is downloaded and run at load time, unscanned",
                evidence=ref[:300],
            )
            continue
        module = class_ref.rpartition(".")[0] or class_ref
        if not all(part.isidentifier() for part in module.split(".")):
            # transformers joins this name into file paths it downloads and copies to.
            ctx.report(
                "MW-HF-CODE-PATH",
                Severity.HIGH,
                location,
                "auto_map names a module that is not a Python module name (a path?);"
                " loaders build file paths from it",
                evidence=ref[:300],
            )
            continue
        filename = module.replace(".", "/") + ".py"
        local[filename] = (folder / filename).is_file()
    if local:
        present = sorted(f for f, ok in local.items() if ok)
        missing = sorted(f for f, ok in local.items() if not ok)
        detail = f"modules in this folder (each scanned as python-source): {', '.join(present)}"
        if missing:
            detail += f"; missing, fetched at load time and not scanned: {', '.join(missing)}"
        ctx.report(
            "MW-HF-CUSTOM-CODE",
            Severity.MEDIUM,
            location,
            "model needs trust_remote_code: loading it imports and runs Python from the"
            f" repository; review that code. {detail}",
            evidence=", ".join(auto_map_references(auto_map))[:300],
        )


def _check_templates(value: object, source: Path, ctx: ScanContext) -> None:
    """`chat_template` is one template or a list of `{"name", "template"}` objects."""
    location = Location(str(source))
    if isinstance(value, str):
        scan_chat_template(value, location, ctx, "chat_template")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            template = item.get("template") if isinstance(item, dict) else None
            if isinstance(template, str):
                name = item.get("name", index)
                scan_chat_template(template, location, ctx, f"chat_template[{name}]")
            else:
                _malformed(location, ctx, TypeError(f"chat_template[{index}] has no template"))
    elif value is not None:
        _malformed(location, ctx, TypeError("chat_template is neither text nor a list"))


def _check_template_file(path: Path, ctx: ScanContext) -> None:
    if path.suffix == ".jinja":
        text = _read_text(path, ctx)
        if text is not None:
            scan_chat_template(text, Location(str(path)), ctx, path.name)
        return
    data = _read_json(path, ctx)
    if data is not None:
        _check_templates(data.get("chat_template"), path, ctx)


def _check_pickle_weights(members: list[Path], folder: Path, ctx: ScanContext) -> None:
    safetensors = sorted(p.name for p in members if p.suffix.lower() == ".safetensors")
    pickled = sorted(p.name for p in members if p.suffix.lower() in PICKLE_WEIGHT_SUFFIXES)
    if safetensors and pickled:
        ctx.report(
            "MW-HF-PICKLE-WEIGHTS",
            Severity.LOW,
            Location(str(folder)),
            f"pickle-based files ({', '.join(pickled[:5])}) sit next to safetensors weights"
            f" ({', '.join(safetensors[:5])}); prefer safetensors (use_safetensors=True) and"
            " drop the pickles",
            evidence=", ".join(pickled)[:300],
        )


def _link_boundary(folder: Path) -> tuple[Path, str]:
    """Where the folder's symlinks may point: the cache's `blobs/`, or the folder itself."""
    for revision in (folder, *folder.parents):
        snapshots = revision.parent
        if snapshots.name == "snapshots" and snapshots.parent.name.startswith(CACHE_PREFIXES):
            return Path(os.path.realpath(snapshots.parent / "blobs")), "the cache's blobs/ folder"
    return Path(os.path.realpath(folder)), "the model folder"


def _check_symlinks(folder: Path, ctx: ScanContext) -> None:
    boundary, described = _link_boundary(folder)
    seen = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in (*dirnames, *filenames):
            ctx.check_deadline()
            seen += 1
            if seen > ctx.config.limits.max_members:
                return
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = Path(os.path.realpath(link))
            if not target.is_relative_to(boundary):
                ctx.report(
                    "MW-HF-SYMLINK-ESCAPE",
                    Severity.HIGH,
                    Location(str(link)),
                    f"symlink resolves outside {described}; a loader following it reads (or a"
                    " download overwrites) files elsewhere on this machine",
                    evidence=f"{os.readlink(link)} -> {target}"[:300],
                )
