"""Safetensors: an 8-byte header length, a JSON header, then raw tensor bytes.

The format cannot run code, so the attacks are on parsers and on trust: a
header length that asks for exabytes, offsets that alias or run past the data,
bytes no tensor claims (a hidden payload or a polyglot), and metadata that is
not the plain strings loaders expect. We parse the header ourselves, bounded,
and never read past it.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import math
import re
from typing import Any

from modelward.findings import Severity
from modelward.formats._capped import CappedReporter
from modelward.formats._extents import Extent, layout_problems
from modelward.formats.interface import Blob, ScanContext
from modelward.pickle.sniff import looks_like_pickle, walk_head

#: Bits per element of every dtype the safetensors specification defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "F4": 4,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "I64": 64,
    "U64": 64,
    "F64": 64,
}

_LENGTH_BYTES = 8
_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_EVIDENCE_CHARS = 200


class _DuplicateKey(ValueError):
    pass


#: Substrings that only code has.
_CODE_MARKERS = (
    "__import__",
    "__builtins__",
    "__globals__",
    "__subclasses__",
    "os.system",
    "os.popen",
    "subprocess.",
    "eval(",
    "exec(",
    "compile(",
    "pickle.loads",
    "marshal.loads",
)
#: Python source nodes that make a value code rather than data.
_CODE_NODES = (
    ast.Call,
    ast.Import,
    ast.ImportFrom,
    ast.Lambda,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)
#: Longest value parsed as Python.
_MAX_PARSED = 64 * 1024
_B64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){8,}")


def code_in_metadata(value: str) -> str | None:
    """Why a metadata string looks like code or a pickle, or None for ordinary metadata."""
    marker = next((m for m in _CODE_MARKERS if m in value), None)
    if marker is not None:
        return f"holds {marker!r}"
    hints = ("(", "import", "lambda", "\n")
    if len(value) <= _MAX_PARSED and any(hint in value for hint in hints):
        try:
            tree = ast.parse(value)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            tree = None
        if tree is not None and any(isinstance(n, _CODE_NODES) for n in ast.walk(tree)):
            return "is Python code with calls or imports"
    stripped = value.strip()
    for name, pattern, decode in (
        ("base64", _B64, _base64_head),
        ("hex", _HEX, _hex_head),
    ):
        if pattern.fullmatch(stripped):
            try:
                head = decode(stripped)
            except (binascii.Error, ValueError):
                continue
            if _is_pickle(head):
                return f"is a {name}-encoded pickle"
    if _is_pickle(value.encode("utf-8", "surrogatepass")[:4096]):
        return "is a pickle"
    return None


def _is_pickle(head: bytes) -> bool:
    """A pickle's start (PROTO), or bytes whose walk reaches an import or a call."""
    head = head[:4096]
    if head[:1] == b"\x80":
        return looks_like_pickle(head)
    return walk_head(head).ending in ("import", "call")


def _base64_head(text: str) -> bytes:
    part = text[:5464]
    return base64.b64decode(part + "=" * (-len(part) % 4))


def _hex_head(text: str) -> bytes:
    return bytes.fromhex(text[:8192])


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with repeated keys read differently in different parsers: reject them."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def load_header_json(text: str) -> Any:
    """The header's JSON, strictly: repeated keys and NaN/Infinity raise `ValueError`.

    Shared with `modelward diff`, so both read a header the same way.
    """
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class SafetensorsScanner:
    """Bounded, self-written parser of the safetensors header."""

    name = "safetensors"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return len(head) >= _LENGTH_BYTES + 2 and head[8:9] == b"{" and head[9:10] in b'"} \t\r\n'

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        out = CappedReporter(ctx, blob.location)
        try:
            self._scan(blob, ctx, out)
        finally:
            out.finish()

    def _scan(self, blob: Blob, ctx: ScanContext, out: CappedReporter) -> None:
        with ctx.open(blob) as stream:
            raw_length = stream.read(_LENGTH_BYTES)
            header_len = int.from_bytes(raw_length, "little")
            available = blob.size - _LENGTH_BYTES
            if header_len > available or header_len > ctx.config.limits.max_header_bytes:
                out.report(
                    "MW-SAFETENSORS-HEADER-SIZE",
                    Severity.MEDIUM,
                    f"header claims {header_len} bytes; the file holds {max(available, 0)} after"
                    f" the length and the limit is {ctx.config.limits.max_header_bytes}",
                    evidence=raw_length.hex(),
                    offset=0,
                )
                return
            raw_header = stream.read(header_len)
        header = self._parse_header(raw_header, out)
        if header is None:
            return
        self._check_entries(header, available - header_len, ctx, out)

    def _parse_header(self, raw: bytes, out: CappedReporter) -> dict[str, Any] | None:
        try:
            text = raw.decode("utf-8")
            header = load_header_json(text)
        except _DuplicateKey as exc:
            problem = f"repeats the key {str(exc)[:_EVIDENCE_CHARS]!r}"
        except UnicodeDecodeError as exc:
            problem = f"is not UTF-8 ({exc.reason} at byte {exc.start})"
        except RecursionError:
            problem = "nests too deeply to parse"
        except ValueError as exc:
            problem = f"is not valid JSON ({str(exc)[:_EVIDENCE_CHARS]})"
        else:
            if isinstance(header, dict):
                return header
            problem = f"is a JSON {type(header).__name__}, not an object"
        out.report(
            "MW-SAFETENSORS-HEADER-JSON",
            Severity.MEDIUM,
            f"safetensors header {problem}",
            evidence=raw[:_EVIDENCE_CHARS].decode("utf-8", errors="replace"),
            offset=_LENGTH_BYTES,
        )
        return None

    def _check_entries(
        self, header: dict[str, Any], data_len: int, ctx: ScanContext, out: CappedReporter
    ) -> None:
        extents: list[Extent] = []
        for name, entry in header.items():
            ctx.check_deadline()
            if name == "__metadata__":
                self._check_metadata(entry, out)
            elif name.startswith("__") and name.endswith("__"):
                out.report(
                    "MW-SAFETENSORS-UNKNOWN-KEY",
                    Severity.MEDIUM,
                    f"unknown top-level key {name[:_EVIDENCE_CHARS]!r} in the header",
                )
            else:
                extent = self._check_tensor(name, entry, data_len, out)
                if extent is not None:
                    extents.append(extent)
        for problem in layout_problems(extents, data_len):
            ctx.check_deadline()
            if problem.kind == "overlap":
                out.report(
                    "MW-SAFETENSORS-OFFSETS",
                    Severity.MEDIUM,
                    f"tensor {problem.name[:_EVIDENCE_CHARS]!r} overlaps another tensor's bytes",
                    evidence=f"data bytes {problem.begin}..{problem.end}",
                )
            else:
                out.report(
                    "MW-SAFETENSORS-HIDDEN-DATA",
                    Severity.MEDIUM,
                    f"{problem.end - problem.begin} data bytes belong to no tensor (hidden data)",
                    evidence=f"data bytes {problem.begin}..{problem.end}",
                )

    def _check_metadata(self, metadata: Any, out: CappedReporter) -> None:
        if not isinstance(metadata, dict):
            out.report(
                "MW-SAFETENSORS-METADATA",
                Severity.MEDIUM,
                f"__metadata__ is a {type(metadata).__name__}, not a string-to-string map",
            )
            return
        for key, value in metadata.items():
            if not isinstance(value, str):
                out.report(
                    "MW-SAFETENSORS-METADATA",
                    Severity.MEDIUM,
                    f"__metadata__ value for {key[:_EVIDENCE_CHARS]!r} is a"
                    f" {type(value).__name__}, not a string",
                    evidence=json.dumps(value)[:_EVIDENCE_CHARS],
                )
                continue
            why = code_in_metadata(value)
            if why is not None:
                out.report(
                    "MW-SAFETENSORS-METADATA-CODE",
                    Severity.LOW,
                    f"__metadata__ value for {key[:_EVIDENCE_CHARS]!r} {why}; safetensors"
                    " never runs it, but code that reads the metadata might",
                    evidence=value[:_EVIDENCE_CHARS],
                )

    def _check_tensor(
        self, name: str, entry: Any, data_len: int, out: CappedReporter
    ) -> Extent | None:
        """Validate one tensor entry; return its byte range when the offsets are usable."""
        label = repr(name[:_EVIDENCE_CHARS])

        def bad(rule_id: str, message: str, value: Any) -> None:
            out.report(
                rule_id,
                Severity.MEDIUM,
                f"tensor {label}: {message}",
                evidence=json.dumps(value)[:_EVIDENCE_CHARS],
            )

        if not isinstance(entry, dict):
            bad("MW-SAFETENSORS-TENSOR", "entry is not an object", entry)
            return None
        unknown = sorted(set(entry) - _TENSOR_KEYS)
        if unknown:
            bad("MW-SAFETENSORS-UNKNOWN-KEY", "entry has unknown keys", unknown)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
        if bits is None:
            bad("MW-SAFETENSORS-TENSOR", "missing or unknown dtype", dtype)
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            bad("MW-SAFETENSORS-TENSOR", "shape is not a list of non-negative integers", shape)
            shape = None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(o) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            bad(
                "MW-SAFETENSORS-OFFSETS",
                "data_offsets is not [begin, end] with begin <= end",
                offsets,
            )
            return None
        begin, end = offsets
        if end > data_len:
            bad(
                "MW-SAFETENSORS-OFFSETS",
                f"data_offsets run past the {data_len}-byte data section",
                offsets,
            )
            return None
        if bits is not None and shape is not None:
            total_bits = math.prod(shape) * bits
            if total_bits % 8 or total_bits // 8 != end - begin:
                bad(
                    "MW-SAFETENSORS-SIZE-MISMATCH",
                    f"{dtype} x {shape} needs {total_bits / 8:g} bytes but data_offsets span"
                    f" {end - begin}",
                    offsets,
                )
        return Extent(name, begin, end)


SAFETENSORS = SafetensorsScanner()
