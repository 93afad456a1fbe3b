"""GGUF (llama.cpp): a typed key/value header, tensor descriptions, aligned tensor data.

GGUF holds no code, but two things in it are acted on: every count and length
is trusted by C parsers (CVE-2024-25664 and friends: heap overflows from huge
counts), and `tokenizer.chat_template` is a Jinja template that Python servers
render (CVE-2024-34359, template injection to code execution). We parse the
header with our own bounded reader and hand chat templates to
`jinja_template`; tensor data is never read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from modelward.analysis.jinja_template import scan_chat_template
from modelward.findings import Severity
from modelward.formats._capped import CappedReporter
from modelward.formats._extents import Extent, layout_problems
from modelward.formats.interface import Blob, ScanContext

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = frozenset({1, 2, 3})
DEFAULT_ALIGNMENT = 32
#: ggml's GGML_MAX_DIMS.
MAX_DIMS = 4
#: Arrays of arrays are legal; deeper than this is only an attack on recursive readers.
MAX_ARRAY_NESTING = 4

#: GGUF value types (gguf.GGUFValueType) with the struct code of the fixed-size ones.
_FIXED_TYPES: dict[int, str] = {
    0: "B",  # UINT8
    1: "b",  # INT8
    2: "H",  # UINT16
    3: "h",  # INT16
    4: "I",  # UINT32
    5: "i",  # INT32
    6: "f",  # FLOAT32
    7: "?",  # BOOL
    10: "Q",  # UINT64
    11: "q",  # INT64
    12: "d",  # FLOAT64
}
_STRING = 8
_ARRAY = 9
_UINT32 = 4

#: ggml tensor types: (elements per block, bytes per block), as gguf.GGML_QUANT_SIZES.
GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
}

_EVIDENCE_CHARS = 200


class GGUFError(ValueError):
    """The header cannot be read further; `offset` is where reading stopped."""

    def __init__(self, message: str, offset: int, rule_id: str = "MW-GGUF-MALFORMED") -> None:
        super().__init__(message)
        self.offset = offset
        self.rule_id = rule_id


class _HeaderReader:
    """Reads header fields from a stream, checking every length against the file and the budget."""

    def __init__(self, stream: BinaryIO, size: int, budget: int, endian: str, width: str) -> None:
        self.stream = stream
        self.size = size
        self.budget = budget
        self.endian = endian
        #: struct code of counts and lengths: "Q" (GGUF v2+) or "I" (v1).
        self.width = width
        self.pos = 0

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise GGUFError(f"{what} needs {n} bytes, only {self.remaining} remain", self.pos)
        if self.pos + n > self.budget:
            raise GGUFError(f"header exceeds the {self.budget}-byte header limit", self.pos)
        data = self.stream.read(n)
        if len(data) != n:
            raise GGUFError(f"{what} truncated", self.pos)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise GGUFError(f"{what} needs {n} bytes, only {self.remaining} remain", self.pos)
        if self.pos + n > self.budget:
            raise GGUFError(f"header exceeds the {self.budget}-byte header limit", self.pos)
        self.stream.seek(n, 1)
        self.pos += n

    def unpack(self, code: str, what: str) -> int | float | bool:
        fmt = self.endian + code
        value: int | float | bool = struct.unpack(fmt, self.read(struct.calcsize(fmt), what))[0]
        return value

    def count(self, what: str) -> int:
        return int(self.unpack(self.width, what))

    def string(self, what: str) -> bytes:
        return self.read(self.count(f"{what} length"), what)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor-table row; `offset` is absolute in the file (data section start added)."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int | None


@dataclass
class _Header:
    alignment: int = DEFAULT_ALIGNMENT
    tensor_count: int = 0
    templates: list[tuple[str, str, int]] = field(default_factory=list)
    tensors: list[TensorEntry] = field(default_factory=list)


class GGUFScanner:
    """Bounded GGUF header parser: counts, lengths, types, tensor extents, chat templates."""

    name = "gguf"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        out = CappedReporter(ctx, blob.location)
        header = _Header()
        try:
            with ctx.open(blob) as stream:
                reader = self._open_header(stream, blob, ctx)
                self._read_kvs(reader, header, ctx, out)
                self._read_tensors(reader, header, ctx, out)
        except GGUFError as exc:
            out.report(exc.rule_id, Severity.MEDIUM, f"GGUF header: {exc}", offset=exc.offset)
        finally:
            for key, template, offset in header.templates:
                scan_chat_template(template, blob.location.at(offset), ctx, source=key)
            out.finish()

    def _open_header(self, stream: BinaryIO, blob: Blob, ctx: ScanContext) -> _HeaderReader:
        budget = ctx.config.limits.max_header_bytes
        reader = _HeaderReader(stream, blob.size, budget, "<", "Q")
        reader.read(4, "magic")
        raw_version = reader.read(4, "version")
        version = int.from_bytes(raw_version, "little")
        if version not in SUPPORTED_VERSIONS:
            swapped = int.from_bytes(raw_version, "big")
            if swapped not in SUPPORTED_VERSIONS:
                raise GGUFError(f"unsupported GGUF version {version}", 4)
            reader.endian, version = ">", swapped
        if version == 1:
            reader.width = "I"
        return reader

    def _read_kvs(
        self, reader: _HeaderReader, header: _Header, ctx: ScanContext, out: CappedReporter
    ) -> None:
        tensor_count = reader.count("tensor count")
        kv_count = reader.count("key/value count")
        header.tensor_count = tensor_count
        # The smallest tensor info and key/value take 20 and 9 bytes (v1; more in v2+): a count
        # the rest of the file cannot hold is an attack on readers that allocate by count.
        for what, count, smallest in (("tensor", tensor_count, 20), ("key/value", kv_count, 9)):
            if count * smallest > reader.remaining:
                raise GGUFError(
                    f"header claims {count} {what} entries; the {reader.remaining} remaining"
                    f" bytes hold at most {reader.remaining // smallest}",
                    reader.pos,
                    "MW-GGUF-COUNT",
                )
        seen: set[str] = set()
        for _ in range(kv_count):
            ctx.check_deadline()
            offset = reader.pos
            key = self._text(reader.string("key"), "key", offset, out)
            if key in seen:
                out.report(
                    "MW-GGUF-DUPLICATE",
                    Severity.MEDIUM,
                    f"key {key[:_EVIDENCE_CHARS]!r} appears twice (readers disagree on which wins)",
                    offset=offset,
                )
            seen.add(key)
            value_type = int(reader.unpack("I", "value type"))
            value_offset = reader.pos
            if key == "general.alignment":
                self._read_alignment(reader, value_type, header, ctx, out)
            elif value_type == _STRING and (
                key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.")
            ):
                raw = reader.string(key)
                header.templates.append(
                    (key, self._text(raw, key, value_offset, out), value_offset)
                )
            else:
                self._skip_value(reader, value_type, ctx, 0)

    def _read_alignment(
        self,
        reader: _HeaderReader,
        value_type: int,
        header: _Header,
        ctx: ScanContext,
        out: CappedReporter,
    ) -> None:
        offset = reader.pos
        if value_type != _UINT32:
            self._skip_value(reader, value_type, ctx, 0)
            alignment = 0
        else:
            alignment = int(reader.unpack("I", "general.alignment"))
        if alignment <= 0 or alignment & (alignment - 1):
            out.report(
                "MW-GGUF-ALIGNMENT",
                Severity.MEDIUM,
                f"general.alignment is not a power-of-two uint32 (type {value_type},"
                f" value {alignment}); readers disagree on where tensor data starts",
                offset=offset,
            )
            return
        header.alignment = alignment

    def _skip_value(
        self, reader: _HeaderReader, value_type: int, ctx: ScanContext, depth: int
    ) -> None:
        code = _FIXED_TYPES.get(value_type)
        if code is not None:
            reader.skip(struct.calcsize(code), "value")
        elif value_type == _STRING:
            reader.skip(reader.count("string length"), "string")
        elif value_type == _ARRAY:
            if depth >= MAX_ARRAY_NESTING:
                raise GGUFError(f"arrays nested deeper than {MAX_ARRAY_NESTING}", reader.pos)
            item_type = int(reader.unpack("I", "array item type"))
            length = reader.count("array length")
            item_code = _FIXED_TYPES.get(item_type)
            if item_code is not None:
                reader.skip(length * struct.calcsize(item_code), "array")
                return
            if item_type in (_STRING, _ARRAY) and length * 4 > reader.remaining:
                raise GGUFError(f"array of {length} items cannot fit in the file", reader.pos)
            for index in range(length):
                if index % 4096 == 0:
                    ctx.check_deadline()
                self._skip_value(reader, item_type, ctx, depth + 1)
        else:
            raise GGUFError(f"unknown value type {value_type}", reader.pos - 4)

    def _text(self, raw: bytes, what: str, offset: int, out: CappedReporter) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            out.report(
                "MW-GGUF-MALFORMED",
                Severity.MEDIUM,
                f"{what[:_EVIDENCE_CHARS]} is not valid UTF-8",
                evidence=raw[:_EVIDENCE_CHARS].hex(),
                offset=offset,
            )
            return raw.decode("utf-8", errors="replace")

    def _read_tensors(
        self, reader: _HeaderReader, header: _Header, ctx: ScanContext, out: CappedReporter
    ) -> None:
        extents: list[Extent] = []
        names: set[str] = set()
        for _ in range(header.tensor_count):
            ctx.check_deadline()
            offset = reader.pos
            name = self._text(reader.string("tensor name"), "tensor name", offset, out)
            label = repr(name[:_EVIDENCE_CHARS])
            if name in names:
                out.report(
                    "MW-GGUF-DUPLICATE",
                    Severity.MEDIUM,
                    f"tensor {label} appears twice",
                    offset=offset,
                )
            names.add(name)
            n_dims = int(reader.unpack("I", "tensor n_dims"))
            if n_dims > MAX_DIMS:
                raise GGUFError(
                    f"tensor {label} has {n_dims} dimensions (ggml allows {MAX_DIMS})", offset
                )
            dims = [reader.count("tensor dimension") for _ in range(n_dims)]
            ggml_type = int(reader.unpack("I", "tensor type"))
            data_offset = int(reader.unpack("Q", "tensor offset"))
            nbytes = self._tensor_bytes(label, dims, ggml_type, offset, out)
            if data_offset % header.alignment:
                out.report(
                    "MW-GGUF-TENSOR",
                    Severity.MEDIUM,
                    f"tensor {label} offset {data_offset} is not a multiple of the alignment"
                    f" {header.alignment}",
                    offset=offset,
                )
            if nbytes is not None:
                extents.append(Extent(name, data_offset, data_offset + nbytes))
            header.tensors.append(TensorEntry(name, tuple(dims), ggml_type, data_offset, nbytes))
        data_start = -(-reader.pos // header.alignment) * header.alignment
        header.tensors = [
            TensorEntry(t.name, t.dims, t.ggml_type, t.offset + data_start, t.nbytes)
            for t in header.tensors
        ]
        data_len = max(reader.size - data_start, 0)
        for extent in extents:
            if extent.end > data_len:
                out.report(
                    "MW-GGUF-TENSOR",
                    Severity.MEDIUM,
                    f"tensor {extent.name[:_EVIDENCE_CHARS]!r} (data bytes {extent.begin}.."
                    f"{extent.end}) runs past the {data_len}-byte data section",
                )
        for problem in layout_problems(extents, data_len, slack=header.alignment - 1):
            ctx.check_deadline()
            if problem.kind == "overlap":
                out.report(
                    "MW-GGUF-TENSOR",
                    Severity.MEDIUM,
                    f"tensor {problem.name[:_EVIDENCE_CHARS]!r} overlaps another tensor's bytes",
                    evidence=f"data bytes {problem.begin}..{problem.end}",
                )
            elif problem.begin < data_len:
                out.report(
                    "MW-GGUF-HIDDEN-DATA",
                    Severity.MEDIUM,
                    f"{problem.end - problem.begin} data bytes belong to no tensor (hidden data)",
                    evidence=f"data bytes {problem.begin}..{problem.end}",
                )

    def _tensor_bytes(
        self, label: str, dims: list[int], ggml_type: int, offset: int, out: CappedReporter
    ) -> int | None:
        block = GGML_BLOCKS.get(ggml_type)
        if block is None:
            out.report(
                "MW-GGUF-TENSOR",
                Severity.MEDIUM,
                f"tensor {label} has unknown ggml type {ggml_type}; its size cannot be checked",
                offset=offset,
            )
            return None
        elements = 1
        for dim in dims:
            elements *= dim
        per_block, block_bytes = block
        if elements % per_block:
            out.report(
                "MW-GGUF-TENSOR",
                Severity.MEDIUM,
                f"tensor {label} has {elements} elements, not a multiple of its type's block"
                f" size {per_block}",
                offset=offset,
            )
            return None
        return elements // per_block * block_bytes


GGUF = GGUFScanner()


def read_tensor_table(blob: Blob, ctx: ScanContext) -> list[TensorEntry]:
    """The tensor table, read by the scanner's bounded parser (for `modelward diff`).

    Problems are reported through `ctx` as a scan would; raises `GGUFError` when the
    header cannot be read to the end of the table.
    """
    out = CappedReporter(ctx, blob.location)
    header = _Header()
    try:
        with ctx.open(blob) as stream:
            reader = GGUF._open_header(stream, blob, ctx)
            GGUF._read_kvs(reader, header, ctx, out)
            GGUF._read_tensors(reader, header, ctx, out)
    finally:
        out.finish()
    return header.tensors
