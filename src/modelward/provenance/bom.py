"""AI-BOM: a CycloneDX 1.6 inventory of the models in a folder and the Python packages around them.

Each model becomes a `machine-learning-model` component carrying its files (SHA-256
from the integrity manifest, format from the scanner's content detection), a
`modelCard` built from `config.json` and the README model card, the datasets it
names as `data` components, and its `base_model` as a pedigree ancestor.
`cyclonedx-python-lib` builds and serialises the document; it has no `modelCard`
yet, so that part is added to its JSON output here (the test validates the
result against the CycloneDX 1.6 schema bundled with the library).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from modelward.config import ScanConfig
from modelward.errors import ModelwardError
from modelward.findings import Finding, ScanReport, ScanResult, Severity
from modelward.formats.hf_folder import (
    CACHE_PREFIXES,
    FOLDER_FORMAT,
    MAX_CONFIG_BYTES,
    WEIGHT_SUFFIXES,
)
from modelward.integrity.manifest import Manifest, hash_model

#: Scanner formats that are not weights: a loose file with one of them is not a model.
NOT_MODEL_FORMATS = frozenset({"text", "empty", "python-source", "unreadable", "unknown"})
_HF_REVISION = re.compile(r"[0-9a-f]{40}")
_MAPPING_ITEM = re.compile(r"[\w-]+:(\s|$)")
_REQUIREMENT = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(?:===?\s*([^\s;,#]+))?"
)


class BomError(ModelwardError, ValueError):
    """The path or a requirements file cannot be inventoried."""


@dataclass
class ModelCard:
    """What `config.json` and the README front matter say about a model."""

    architectures: list[str] = field(default_factory=list)
    model_type: str | None = None
    name_or_path: str | None = None
    license: str | None = None
    datasets: list[str] = field(default_factory=list)
    task: str | None = None
    tags: list[str] = field(default_factory=list)
    base_models: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)


@dataclass
class ModelEntry:
    """One model found under the BOM path: its root, its files and where it came from."""

    root: Path
    name: str
    card: ModelCard
    hub_id: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class PythonPackage:
    name: str
    version: str | None


# --- model card ---------------------------------------------------------------------------


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float) and str(v)]
    return []


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text.split(" #", 1)[0].strip()


def front_matter(readme: str) -> dict[str, object]:
    """Top-level scalars and string lists of a model card's YAML front matter.

    Model cards use a tiny part of YAML (`key: value`, `key: [a, b]`, `key:` then
    `- item` lines); nested mappings such as `model-index` are skipped. A real
    YAML parser is not needed for these fields and would be one more dependency.
    """
    lines = readme.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    data: dict[str, object] = {}
    key: str | None = None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            key, _, rest = line.partition(":")
            key, rest = key.strip(), rest.strip()
            if rest.startswith("[") and rest.endswith("]"):
                data[key] = [_scalar(v) for v in rest[1:-1].split(",") if v.strip()]
            elif rest:
                data[key] = _scalar(rest)
            else:
                data[key] = []
        elif (
            key is not None
            and line.lstrip().startswith("- ")
            and not _MAPPING_ITEM.match(line.lstrip()[2:])
        ):
            items = data.get(key)
            if isinstance(items, list):
                items.append(_scalar(line.lstrip()[2:]))
        elif key is not None:
            data.pop(key, None)  # nested mappings (`model-index:`), not a list of strings
            key = None
    return data


def _read_small(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def read_model_card(folder: Path) -> ModelCard:
    """The model card fields of an HF folder; missing or unreadable files leave them empty."""
    card = ModelCard()
    text = _read_small(folder / "config.json")
    config: object = None
    if text is not None:
        try:
            config = json.loads(text)
        except (ValueError, RecursionError):  # hostile nesting reads as no config
            config = None
    if isinstance(config, dict):
        card.architectures = _strings(config.get("architectures"))
        card.model_type = next(iter(_strings(config.get("model_type"))), None)
        card.name_or_path = next(iter(_strings(config.get("_name_or_path"))), None)
    readme = _read_small(folder / "README.md")
    meta = front_matter(readme) if readme is not None else {}
    card.license = next(iter(_strings(meta.get("license"))), None)
    if card.license == "other" and meta.get("license_name"):
        card.license = next(iter(_strings(meta.get("license_name"))), card.license)
    card.datasets = _strings(meta.get("datasets"))
    card.task = next(iter(_strings(meta.get("pipeline_tag"))), None)
    card.tags = _strings(meta.get("tags"))
    card.base_models = _strings(meta.get("base_model"))
    card.languages = _strings(meta.get("language"))
    return card


# --- finding the models --------------------------------------------------------------------


def hub_origin(folder: Path) -> tuple[str | None, str | None]:
    """`(org/name, revision)` of an HF cache snapshot `models--org--name/snapshots/<rev>`."""
    parts = Path(os.path.abspath(folder)).parts  # not resolved: snapshot files link to blobs/
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith(CACHE_PREFIXES[0]):
        repo = parts[-3][len(CACHE_PREFIXES[0]) :].replace("--", "/", 1)
        revision = parts[-1] if _HF_REVISION.fullmatch(parts[-1]) else None
        return repo, revision
    return None, None


def _entry(root: Path) -> ModelEntry:
    card = read_model_card(root) if root.is_dir() else ModelCard()
    hub_id, revision = hub_origin(root)
    return ModelEntry(root, hub_id or root.name, card, hub_id, revision)


def find_models(path: Path, config: ScanConfig | None = None) -> list[ModelEntry]:
    """The models under `path`: the file, the HF folder, or each model folder and loose weight.

    A loose file is a model when its name says weights or its bytes are a model format
    (a pickle named `weights.dat` is inventoried too).
    """
    from modelward.scanner import SKIPPED_DIRS, scan_file

    if not path.exists():
        raise BomError(f"{path}: no such file or directory")
    if path.is_file() or (path / "config.json").is_file():
        return [_entry(path)]
    models: list[ModelEntry] = []
    for child in sorted(path.iterdir()):
        if child.name.startswith(".") or child.name in SKIPPED_DIRS:
            continue
        if child.is_dir():
            is_model = (child / "config.json").is_file()
            models += [_entry(child)] if is_model else find_models(child, config)
        elif child.suffix.lower() in WEIGHT_SUFFIXES or (
            scan_file(child, config or ScanConfig()).format not in NOT_MODEL_FORMATS
        ):
            models.append(_entry(child))
    return models


# --- Python packages -----------------------------------------------------------------------


def read_requirements(path: Path) -> list[PythonPackage]:
    """Packages of a `requirements.txt` (pins become versions) or a PEP 751 `pylock.toml`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BomError(f"{path}: cannot read: {exc}") from None
    if path.suffix == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BomError(f"{path}: not valid TOML: {exc}") from None
        return [
            PythonPackage(str(p["name"]), str(p["version"]) if "version" in p else None)
            for p in doc.get("packages", [])
            if isinstance(p, dict) and "name" in p
        ]
    packages = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-") or "://" in line:
            continue
        match = _REQUIREMENT.match(line)
        if match:
            packages.append(PythonPackage(match.group(1), match.group(3)))
    return packages


def installed_packages() -> list[PythonPackage]:
    """Every distribution installed in the running environment."""
    found = {
        (d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"]
    }
    return [PythonPackage(name, version) for name, version in sorted(found)]


# --- the BOM -------------------------------------------------------------------------------


@dataclass
class _Built:
    """What the library cannot hold (model cards) and the `bom-ref`s given out so far."""

    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # bom-ref -> modelCard
    refs: set[str] = field(default_factory=set)

    def unique_ref(self, ref: str) -> str:
        """`ref`, or `ref#2`, `ref#3`... when two models share a name (two snapshots, folders)."""
        n = 1
        unique = ref
        while unique in self.refs:
            n += 1
            unique = f"{ref}#{n}"
        self.refs.add(unique)
        return unique


def _model_files(
    ref: str, manifest: Manifest, results: dict[str, ScanResult], scan: bool
) -> Iterator[Any]:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType

    for e in manifest.entries:
        result = results.get(e.path)
        props = [Property(name="modelward:size", value=str(e.size))]
        if result is not None:
            props.append(Property(name="modelward:format", value=result.format))
            if scan:
                props += _verdict(result.findings)
        yield Component(
            type=ComponentType.FILE,
            name=e.path,
            bom_ref=f"{ref}#file:{e.path}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=e.digest.hex())],
            properties=props,
        )


def _verdict(findings: list[Finding], worst: Severity | None = None) -> list[Any]:
    """`modelward:scan:verdict` (the worst severity, or `clean`) and one property per finding."""
    from cyclonedx.model import Property

    top = max([f.severity for f in findings] + ([worst] if worst is not None else []), default=None)
    props = [Property(name="modelward:scan:verdict", value=top.label if top else "clean")]
    props += [
        Property(
            name="modelward:scan:finding",
            value=f"{f.severity.label} {f.rule_id} {f.location}: {f.message}",
        )
        for f in findings
    ]
    return props


def _scan_results(
    entry: ModelEntry, config: ScanConfig
) -> tuple[dict[str, ScanResult], ScanReport]:
    """Each file's result keyed by its name inside the model, and the whole report.

    The report also holds the folder-level results (`hf-model-folder`: `auto_map` code,
    chat templates), which belong to the model rather than to one file.
    """
    from modelward.runner import scan_paths

    report = scan_paths([entry.root], config)
    if entry.root.is_file():
        return {entry.root.name: report.results[0]}, report
    files = {
        Path(r.path).relative_to(entry.root).as_posix(): r
        for r in report.results
        if r.format != FOLDER_FORMAT
    }
    return files, report


def _model_verdict(report: ScanReport, single: bool) -> list[Any]:
    """The model's verdict over all its files; findings listed are the model-level ones.

    Findings on a file are on that file's component; a single-file model lists its own.
    """
    own = [r for r in report.results if single or r.format == FOLDER_FORMAT]
    worst = max((f.severity for f in report.findings), default=None)
    return _verdict([f for r in own for f in r.findings], worst)


def _purl(entry: ModelEntry) -> Any:
    from packageurl import PackageURL

    if entry.hub_id is None:
        return None
    org, _, name = entry.hub_id.rpartition("/")
    return PackageURL(type="huggingface", namespace=org or None, name=name, version=entry.revision)


def _hub_component(hub_id: str, kind: Any, ref: str | None = None) -> Any:
    """A model or dataset named by a hub id; only models have a purl type (`huggingface`)."""
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    org, _, name = hub_id.rpartition("/")
    purl = PackageURL(type="huggingface", namespace=org or None, name=name)
    return Component(
        type=kind,
        name=hub_id,
        bom_ref=ref or f"{kind.value}:{hub_id}",
        purl=purl if kind is ComponentType.MACHINE_LEARNING_MODEL else None,
    )


def _model_component(
    entry: ModelEntry, config: ScanConfig, scan: bool, built: _Built, datasets: dict[str, Any]
) -> Any:
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType, Pedigree

    links = entry.hub_id is not None
    manifest = hash_model(entry.root, allow_symlinks=links)
    results, report = _scan_results(entry, config)
    card = entry.card
    props = [Property(name="modelward:manifest-digest", value=manifest.digest())]
    formats = sorted({r.format for r in results.values() if r.format not in NOT_MODEL_FORMATS})
    if formats:
        props.append(Property(name="modelward:format", value=", ".join(formats)))
    props += [Property(name="huggingface:language", value=lang) for lang in card.languages]
    if card.name_or_path:
        props.append(Property(name="huggingface:name_or_path", value=card.name_or_path))
    single = entry.root.is_file()
    ref = built.unique_ref(f"model:{entry.name}")
    component = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=entry.name,
        version=entry.revision,
        bom_ref=ref,
        purl=_purl(entry),
        hashes=(
            [HashType(alg=HashAlgorithm.SHA_256, content=e.digest.hex()) for e in manifest.entries]
            if single
            else None
        ),
        licenses=[LicenseFactory().make_from_string(card.license)] if card.license else None,
        properties=props + (_model_verdict(report, single) if scan else []),
        components=None if single else list(_model_files(ref, manifest, results, scan)),
        pedigree=(
            Pedigree(
                ancestors=[
                    _hub_component(b, ComponentType.MACHINE_LEARNING_MODEL, f"{ref}#base:{b}")
                    for b in card.base_models
                ]
            )
            if card.base_models
            else None
        ),
        tags=card.tags or None,
    )
    params: dict[str, Any] = {}
    if card.task:
        params["task"] = card.task
    if card.model_type:
        params["architectureFamily"] = card.model_type
    if card.architectures:
        params["modelArchitecture"] = ", ".join(card.architectures)
    if card.datasets:
        for name in card.datasets:
            datasets.setdefault(name, _hub_component(name, ComponentType.DATA))
        params["datasets"] = [{"ref": f"{ComponentType.DATA.value}:{d}"} for d in card.datasets]
    if params:
        built.cards[ref] = {"bom-ref": f"{ref}#model-card", "modelParameters": params}
    return component


def build_bom(
    path: Path,
    *,
    packages: Iterable[PythonPackage] = (),
    scan: bool = False,
    config: ScanConfig | None = None,
) -> dict[str, Any]:
    """The CycloneDX 1.6 document (as JSON data) for the models under `path` and `packages`."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    from modelward import __version__

    config = config or ScanConfig()
    bom = Bom()
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="modelward", version=__version__)
    )
    built = _Built()
    datasets: dict[str, Any] = {}
    for entry in find_models(path, config):
        bom.components.add(_model_component(entry, config, scan, built, datasets))
    for dataset in datasets.values():
        bom.components.add(dataset)
    seen: set[str] = set()
    for package in packages:
        key = f"{package.name.lower()}@{package.version}"
        if key in seen:
            continue
        seen.add(key)
        purl = PackageURL(type="pypi", name=package.name.lower(), version=package.version)
        bom.components.add(
            Component(
                type=ComponentType.LIBRARY,
                name=package.name,
                version=package.version,
                purl=purl,
                bom_ref=purl.to_string(),
            )
        )
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    for component in doc.get("components", []):
        card = built.cards.get(component.get("bom-ref", ""))
        if card is not None:
            component["modelCard"] = card
    return doc
