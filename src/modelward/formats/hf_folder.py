"""Checks on a Hugging Face model folder as a whole, beyond what each file says alone.

`from_pretrained` reads a folder, not a file: its JSON configs can make it import
Python modules from the folder or from another repository (`auto_map`,
`custom_pipelines`, `trust_remote_code`), tokenizer and processor files carry Jinja
chat templates, and a cache snapshot is made of symlinks into `../../blobs/`. Every
file is still scanned by its own format in the normal walk (`.py` files by the
`python-source` scanner); this module adds one `hf-model-folder` result per model,
tokenizer or processor folder for what only the folder shows.

What is read mirrors transformers 5.x (`dynamic_module_utils`, `models/auto/*_auto.py`,
`tokenization_utils_base`, `processing_utils`, `pipelines/__init__`, `generation/utils`):

- `auto_map` is read from `config.json` (AutoConfig, AutoModel*), `tokenizer_config.json`
  (AutoTokenizer; a dict, or the legacy `[slow, fast]` list), `processor_config.json`,
  `preprocessor_config.json` (AutoProcessor, AutoFeatureExtractor, AutoImageProcessor; an
  image processor's entry may be a `{backend: ref}` dict or a list),
  `video_preprocessor_config.json` (AutoVideoProcessor). Each loader falls back to
  `config.json`'s `auto_map`, so a tokenizer- or processor-only folder runs its code too.
  We also read it in `feature_extractor_config.json`, `image_processor_config.json`,
  `audio_tokenizer_config.json` and `generation_config.json`, which 5.x does not, so a
  loader that does is covered.
- `custom_pipelines` (`config.json`): `{task: {"impl": "module.Class"}}`, imported by
  `pipeline()` with `get_class_from_dynamic_module`.
- `custom_generate/generate.py` is imported by `from_pretrained(trust_remote_code=True)`.
- Chat templates: `chat_template.jinja` and `additional_chat_templates/*.jinja` (tokenizers
  and processors glob that folder), `chat_template.json`'s `chat_template` (processors, the
  legacy file), and the `chat_template` key of `tokenizer_config.json` and
  `processor_config.json` (both still honoured when present).
"""

from __future__ import annotations

import ast
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from modelward.config import ScanConfig
from modelward.findings import Location, ScanResult, Severity
from modelward.formats.interface import Blob, ScanAborted, ScanContext

FOLDER_FORMAT = "hf-model-folder"

#: JSON files a loader reads whose `auto_map` can name code to import (see the docstring).
AUTO_MAP_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
    "audio_tokenizer_config.json",
    "generation_config.json",
)
#: JSON files whose `chat_template` key tokenizers and processors read.
TEMPLATE_KEY_FILES = frozenset({"tokenizer_config.json", "processor_config.json"})
#: Files whose presence alone makes a folder something a transformers loader reads.
LOADER_FILES = frozenset(AUTO_MAP_FILES[1:8]) | {"chat_template.jinja", "chat_template.json"}
#: Sub-folders a loader reads into the folder: extra templates, a custom generate().
TEMPLATE_DIR = "additional_chat_templates"
CUSTOM_GENERATE = "custom_generate"
#: Modules followed through relative imports from the ones a config names.
MAX_CODE_MODULES = 64
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
    """Each folder among `files` that a transformers loader reads.

    A model config with weights or a tokenizer; a tokenizer, processor or chat-template
    file alone (a tokenizer-only repository); or a `config.json` naming code
    (`auto_map`, `custom_pipelines`). Yields the folder and the scanned files directly in
    it, in the order given, then those of its `additional_chat_templates/` and
    `custom_generate/` sub-folders.
    """
    by_folder: dict[Path, list[Path]] = {}
    nested: dict[Path, list[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, []).append(path)
        if path.parent.name in (TEMPLATE_DIR, CUSTOM_GENERATE):
            nested.setdefault(path.parent.parent, []).append(path)
    for folder in dict.fromkeys([*by_folder, *nested]):
        members = by_folder.get(folder, [])
        extra = nested.get(folder, [])
        names = {p.name for p in members}
        if (
            names & LOADER_FILES
            or any(p.parent.name == TEMPLATE_DIR and p.suffix == ".jinja" for p in extra)
            or any(p.parent.name == CUSTOM_GENERATE and p.name == "generate.py" for p in extra)
            or (
                "config.json" in names
                and (
                    any(p.suffix.lower() in WEIGHT_SUFFIXES for p in members)
                    or _names_code(folder / "config.json")
                )
            )
        ):
            yield folder, members + extra


def _names_code(config: Path) -> bool:
    """A `config.json` with `auto_map` or `custom_pipelines` (malformed: not a model folder)."""
    try:
        if config.stat().st_size > MAX_CONFIG_BYTES:
            return False
        data = json.loads(config.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and ("auto_map" in data or "custom_pipelines" in data)


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
    names = {p.name: p for p in members if p.parent == folder}
    for name in AUTO_MAP_FILES:
        if name in names:
            data = _read_json(names[name], ctx)
            if data is not None:
                refs = _code_references(data, names[name], ctx)
                _check_auto_map(refs, names[name], folder, ctx)
                if name in TEMPLATE_KEY_FILES:
                    _check_templates(data.get("chat_template"), names[name], ctx)
    for name in ("chat_template.jinja", "chat_template.json"):
        if name in names:
            _check_template_file(names[name], ctx)
    for path in members:
        if path.parent == folder / TEMPLATE_DIR and path.suffix == ".jinja":
            _check_template_file(path, ctx)
        elif path.parent == folder / CUSTOM_GENERATE and path.name == "generate.py":
            _check_custom_generate(path, folder, ctx)
    _check_pickle_weights([p for p in members if p.parent == folder], folder, ctx)
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
    """Every class reference in an `auto_map`.

    Values are strings, `[slow, fast]` lists with nulls, or `{backend: ref}` dicts (image
    and video processors); a tokenizer config's `auto_map` may itself be the list.
    """
    values: list[object]
    if isinstance(auto_map, dict):
        values = list(auto_map.values())
    elif isinstance(auto_map, list | tuple):
        values = [auto_map]
    else:
        return []
    refs: list[str] = []
    for value in values:
        inner = value.values() if isinstance(value, dict) else value
        items = list(inner) if isinstance(inner, list | tuple | type({}.values())) else [inner]
        refs.extend(item for item in items if isinstance(item, str) and item)
    return refs


def _code_references(data: dict[str, Any], source: Path, ctx: ScanContext) -> list[str]:
    """`auto_map` references and `custom_pipelines` implementations in one config."""
    location = Location(str(source))
    auto_map = data.get("auto_map")
    refs: list[str] = []
    if auto_map is not None and not isinstance(auto_map, dict | list):
        _malformed(location, ctx, TypeError("auto_map is not an object"))
    else:
        refs = auto_map_references(auto_map)
    pipelines = data.get("custom_pipelines")
    if isinstance(pipelines, dict):
        for task in pipelines.values():
            impl = task.get("impl") if isinstance(task, dict) else None
            if isinstance(impl, str) and impl:
                refs.append(impl)
    elif pipelines is not None:
        _malformed(location, ctx, TypeError("custom_pipelines is not an object"))
    return refs


def _check_auto_map(refs: list[str], source: Path, folder: Path, ctx: ScanContext) -> None:
    location = Location(str(source))
    local: dict[str, bool] = {}
    for ref in refs:
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
        _report_custom_code(
            [folder / f for f in present],
            folder,
            location,
            ctx,
            "this repository runs its own code when loaded (trust_remote_code): loading"
            f" imports and runs Python from it; review it. {detail}",
            ", ".join(refs)[:300],
        )


def _check_custom_generate(path: Path, folder: Path, ctx: ScanContext) -> None:
    _report_custom_code(
        [path],
        folder,
        Location(str(path)),
        ctx,
        "this repository runs its own code when loaded (trust_remote_code):"
        " from_pretrained imports custom_generate/generate.py to replace generate(); review it",
        f"{CUSTOM_GENERATE}/generate.py",
    )


def _report_custom_code(
    modules: list[Path],
    folder: Path,
    location: Location,
    ctx: ScanContext,
    message: str,
    evidence: str,
) -> None:
    """MW-HF-CUSTOM-CODE: medium at least, higher when the code it runs reaches more."""
    uses = _code_uses(modules, folder, ctx)
    severity = max([Severity.MEDIUM, *(grade for grade, _ in uses)])
    if severity > Severity.MEDIUM:
        worst = [what for grade, what in sorted(uses, reverse=True) if grade == severity]
        message += f". The code it runs reaches: {'; '.join(worst[:3])}"
    ctx.report("MW-HF-CUSTOM-CODE", severity, location, message, evidence=evidence)


def _code_uses(modules: list[Path], folder: Path, ctx: ScanContext) -> list[tuple[Severity, str]]:
    """Graded uses in `modules` and the folder's modules they import relatively.

    transformers copies and imports those too (`get_relative_import_files`). Source that
    cannot be read or parsed is graded high: what it runs is unknown.
    """
    from modelward.analysis.pycode import find_code_uses, parse_python

    found: list[tuple[Severity, str]] = []
    queue = list(dict.fromkeys(modules))
    seen = set(queue)
    while queue and len(seen) <= MAX_CODE_MODULES:
        path = queue.pop(0)
        ctx.check_deadline()
        text = _read_text(path, ctx)
        try:
            tree = parse_python(text if text is not None else "")
        except (SyntaxError, ValueError):
            tree = None
        if text is None or tree is None:
            found.append((Severity.HIGH, f"{path.name}: source that cannot be analysed"))
            continue
        for use in find_code_uses(tree, ctx):
            found.append((use.grade, f"{path.name} line {use.line}: {use.name}"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                candidate = base.joinpath(*node.module.split(".")).with_suffix(".py")
                if (
                    candidate not in seen
                    and candidate.is_file()
                    and candidate.is_relative_to(folder)
                ):
                    seen.add(candidate)
                    queue.append(candidate)
    return found


def _check_templates(value: object, source: Path, ctx: ScanContext) -> None:
    """`chat_template` is one template or a list of `{"name", "template"}` objects."""
    from modelward.analysis.jinja_template import scan_chat_template

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
    from modelward.analysis.jinja_template import scan_chat_template

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
