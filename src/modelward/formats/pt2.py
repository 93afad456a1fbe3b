"""`torch.export.save` archives (`.pt2`), each member read the way the loader reads it.

A `.pt2` is a PyTorch zip whose top folder holds `archive_format` (the text `pt2`, which is
what `PT2ArchiveReader` checks and what we recognise it by), `archive_version`, `byteorder`,
`.data/version`, `.data/serialization_id`, and per exported model `<m>`:

* `models/<m>.json`: the graph, parsed as JSON;
* `data/weights/<m>_weights_config.json`, `data/constants/<m>_constants_config.json`: JSON
  payload configs saying, per tensor, which member holds it and whether it is pickled;
* `data/weights/weight_*`, `data/constants/tensor_*` with `use_pickle: false`: raw tensor
  bytes, mapped as storage (`get_storage_from_record`); never read here;
* `extra/*`: read as strings.

What `torch.export.load` (torch 2.13, `torch/export/pt2_archive/_package.py` and
`torch/_export/serde/serialize.py`) unpickles:

* `data/sample_inputs/<m>.pt`: `deserialize_torch_artifact` -> `torch.load`, first with
  `weights_only=True`, then again with `weights_only=False` when that fails: any pickle runs;
* `data/weights/<name>` and `data/constants/tensor_*` whose config says `use_pickle`
  (tensor subclasses): `torch.load(weights_only=False)`;
* `data/weights/<m>.pt`, `data/constants/<m>.pt` (legacy archives): bytes handed to
  `deserialize_torch_artifact`, so `torch.load` as above;
* `data/constants/custom_obj_*`: `torch._C._pickle_load_obj` (TorchScript's pickler; the
  bytes are a torch.save-style zip);
* `data/constants/opaque_obj_*`: `pickle.loads`.

Those are scanned as what they are: a zip by the PyTorch zip scanner, anything else as the
pickle stream `torch.load`/`pickle.loads` would run. AOTInductor packages
(`data/aotinductor/<m>/`) hold a compiled shared library that `load_pt2` loads and runs:
native code is reported (`MW-PT2-NATIVE-CODE`), the rest of the folder is scanned by content.
(With `load_weights_from_disk`, AOTI loading also calls `torch.load` with the default
`weights_only=True` on each `data/weights/*` member; a restricted unpickler, not scanned
as a pickle here.) Any other member is reported low and scanned by content: no loader
opens it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from modelward.findings import Severity
from modelward.formats.interface import Blob, ScanContext
from modelward.formats.pytorch import LEGACY_PICKLES, scan_pickle_blob
from modelward.formats.zip import (
    ZipArchive,
    ZipMember,
    looks_like_zip,
    read_zip,
    scan_members,
    zip_member_names,
)

_ARCHIVE_FORMAT = re.compile(r"[^/]+/archive_format")
#: Small records the PyTorch zip writer and the pt2 writer add; read as text, if at all.
_RECORDS = frozenset(
    {
        "archive_format",
        "archive_version",
        "byteorder",
        "version",
        ".data/version",
        ".data/serialization_id",
        ".format_version",
        ".storage_alignment",
    }
)
_MODEL_JSON = re.compile(r"models/([^/]+)\.json")
_WEIGHTS_CONFIG = re.compile(r"data/weights/([^/]+)_weights_config\.json")
_CONSTANTS_CONFIG = re.compile(r"data/constants/([^/]+)_constants_config\.json")
#: Folders of other back ends; their members are scanned by content.
_OTHER_BACKENDS = ("data/aotinductor/", "data/executorch/", "data/mtia/", "xl_model_weights/")
_NATIVE_MAGIC = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
#: Largest payload config we parse (real ones are a few hundred bytes per tensor).
_MAX_CONFIG_BYTES = 64 * 1024**2


def is_pt2(names: list[str]) -> bool:
    return any(_ARCHIVE_FORMAT.fullmatch(n) for n in names)


@dataclass
class _Plan:
    """How the loader reads each member (by path relative to the top folder)."""

    unpickled: dict[str, str] = field(default_factory=dict)  # path -> how (for messages)
    raw: set[str] = field(default_factory=set)


class Pt2Scanner:
    """`torch.export.save` archives: pickled members as pickles, JSON as JSON, weights unread."""

    name = "pt2"

    def detect(self, blob: Blob, head: bytes) -> bool:
        names = zip_member_names(blob, head)
        return names is not None and is_pt2(names)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with read_zip(blob, ctx) as archive:
            top = next(
                m.name.split("/", 1)[0]
                for m in archive.members
                if _ARCHIVE_FORMAT.fullmatch(m.name)
            )
            inside = {
                m.name[len(top) + 1 :]: m for m in archive.members if m.name.startswith(top + "/")
            }
            plan = self._plan(archive, inside, ctx)
            by_content: list[ZipMember] = []
            for path, member in inside.items():
                ctx.check_deadline()
                if member.is_dir or member.is_encrypted or member.is_symlink:
                    continue  # reported by read_zip
                if path in plan.unpickled:
                    _scan_loaded(archive, member, plan.unpickled[path], ctx)
                elif path in plan.raw or path in _RECORDS:
                    continue  # raw tensor bytes or a small text record: nothing parses them
                elif path.startswith("extra/"):
                    by_content.append(member)  # read as strings; a pickle there still shows
                elif path.endswith(".json") and (
                    _MODEL_JSON.fullmatch(path) or path.startswith("data/")
                ):
                    _check_json(archive, member, ctx)
                elif path.startswith(_OTHER_BACKENDS):
                    if _is_native(archive, member, ctx):
                        ctx.report(
                            "MW-PT2-NATIVE-CODE",
                            Severity.MEDIUM,
                            blob.location.member(member.name),
                            "compiled native code (AOTInductor); loading the package runs it"
                            " and it cannot be analysed",
                        )
                    else:
                        by_content.append(member)
                else:
                    ctx.report(
                        "MW-PT2-UNEXPECTED-MEMBER",
                        Severity.LOW,
                        blob.location.member(member.name),
                        "torch.export.save does not write this member and torch.export.load"
                        " does not read it; scanned by content",
                    )
                    by_content.append(member)
            outside = [m for m in archive.members if not m.name.startswith(top + "/")]
            for member in outside:
                ctx.report(
                    "MW-PT2-UNEXPECTED-MEMBER",
                    Severity.LOW,
                    blob.location.member(member.name),
                    f"member outside the archive's top folder {top!r}; scanned by content",
                )
            scan_members(archive, ctx, by_content + outside)

    def _plan(self, archive: ZipArchive, inside: dict[str, ZipMember], ctx: ScanContext) -> _Plan:
        """Which members the loader unpickles and which it maps as raw tensor bytes."""
        plan = _Plan()
        models = [m.group(1) for p in inside if (m := _MODEL_JSON.fullmatch(p))]
        for model in models:
            plan.unpickled[f"data/sample_inputs/{model}.pt"] = "torch.load (sample inputs)"
            plan.unpickled[f"data/weights/{model}.pt"] = "torch.load (legacy weights)"
            plan.unpickled[f"data/constants/{model}.pt"] = "torch.load (legacy constants)"
        for path, member in inside.items():
            if _WEIGHTS_CONFIG.fullmatch(path):
                folder = "data/weights/"
            elif _CONSTANTS_CONFIG.fullmatch(path):
                folder = "data/constants/"
            else:
                continue
            entries = _read_config(archive, member, ctx)
            if entries is None:
                continue
            for name, use_pickle in entries:
                target = folder + name
                if folder == "data/constants/" and name.startswith("opaque_obj_"):
                    plan.unpickled[target] = "pickle.loads (opaque constant)"
                elif folder == "data/constants/" and name.startswith("custom_obj_"):
                    plan.unpickled[target] = "torch._C._pickle_load_obj (script object)"
                elif use_pickle:
                    plan.unpickled[target] = "torch.load (pickled tensor)"
                elif target not in plan.unpickled:
                    plan.raw.add(target)
        plan.raw -= set(plan.unpickled)
        return plan


def _read_config(
    archive: ZipArchive, member: ZipMember, ctx: ScanContext
) -> list[tuple[str, bool]] | None:
    """(`path_name`, `use_pickle`) per entry of a payload config; None (reported) if unreadable."""
    blob = archive.member_blob(member)
    problem = None
    entries: list[tuple[str, bool]] = []
    if member.uncompressed_size > min(_MAX_CONFIG_BYTES, ctx.config.limits.max_header_bytes):
        problem = f"{member.uncompressed_size} bytes is over the config size limit"
    else:
        try:
            with ctx.open(blob) as stream:
                data = json.loads(stream.read(member.uncompressed_size + 1))
            config = data["config"] if isinstance(data, dict) else None
            if not isinstance(config, dict):
                raise ValueError("no 'config' object")
            for entry in config.values():
                if not isinstance(entry, dict) or not isinstance(entry.get("path_name"), str):
                    raise ValueError("an entry has no 'path_name' string")
                entries.append((entry["path_name"], bool(entry.get("use_pickle", False))))
        except (ValueError, KeyError, RecursionError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        return entries
    ctx.report(
        "MW-PT2-MALFORMED",
        Severity.LOW,
        blob.location,
        "payload config is not what torch.export.load reads (it refuses the archive); the"
        " members it would describe are scanned by content",
        evidence=problem[:300],
    )
    return None


def _check_json(archive: ZipArchive, member: ZipMember, ctx: ScanContext) -> None:
    """A member the loader parses as JSON: nothing runs, so only check that it is JSON-like.

    One that is not (a pickle named `model.json`) makes the loader fail; it is reported low
    and scanned by content, so a payload in it is still shown.
    """
    blob = archive.member_blob(member)
    with ctx.open(blob) as stream:
        head = stream.read(64).lstrip()
    if not head or head[:1] in (b"{", b"["):
        return
    ctx.report(
        "MW-PT2-MALFORMED",
        Severity.LOW,
        blob.location,
        "member torch.export.load parses as JSON is not JSON (the loader refuses it); scanned"
        " by content",
        evidence=head[:16].hex(),
    )
    ctx.scan_member(blob)


def _is_native(archive: ZipArchive, member: ZipMember, ctx: ScanContext) -> bool:
    with ctx.open(archive.member_blob(member)) as stream:
        return stream.read(4).startswith(_NATIVE_MAGIC)


def _scan_loaded(archive: ZipArchive, member: ZipMember, how: str, ctx: ScanContext) -> None:
    """A member the loader unpickles: a zip goes to the PyTorch zip scanner (as
    `torch.load` opens it), anything else is the pickle stream `torch.load`'s legacy path or
    `pickle.loads` would run."""
    blob = archive.member_blob(member)
    if looks_like_zip(blob, blob.head()):
        ctx.scan_member(blob)
        return
    streams = 1 if how.startswith("pickle.loads") else LEGACY_PICKLES
    walked = scan_pickle_blob(blob, ctx, max_streams=streams)
    if walked == 0:
        ctx.report(
            "MW-PT2-MALFORMED",
            Severity.LOW,
            blob.location,
            f"member read by {how} holds no pickle (the loader fails on it)",
        )


PT2 = Pt2Scanner()

__all__ = ["PT2", "Pt2Scanner", "is_pt2"]
