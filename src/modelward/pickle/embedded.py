"""Pickles carried as data inside a pickle: raw, base64, hex or zlib-compressed.

A byte or text argument can hold a whole pickle that some code calls `pickle.loads`,
`torch.load` or `base64.b64decode` on later (a Keras `TorchModuleWrapper`, a cache, a
deliberately staged payload). Nothing in the outer stream runs it, so what it would
import is reported as `MW-PICKLE-EMBEDDED` at MEDIUM, with how it was encoded.

Only what looks like a pickle is read: short arguments the walker keeps are checked
in place; longer ones (tensor and array bytes) are peeked at, a few KiB, and read whole
(at most `MAX_EMBEDDED_BYTES`) only when their decoded start sniffs as a pickle. zlib
output is charged to the file's decompression budget. Embedding nests at most
`MAX_DEPTH` deep and each payload is decoded through at most `MAX_LAYERS` layers
(base64 of zlib of a pickle is two).
"""

from __future__ import annotations

import binascii
import io
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelward.findings import Location, Severity
from modelward.pickle import knowledge
from modelward.pickle.knowledge import Outcome, Use
from modelward.pickle.machine import ImportedGlobal, PickleMachine
from modelward.pickle.policy import GlobalPolicy, GlobalVerdict, default_policy
from modelward.pickle.sniff import looks_like_pickle, walk_head
from modelward.pickle.walker import ByteSource, LargePayload, PickleDamage

if TYPE_CHECKING:  # formats import this module through the pickle scanner
    from modelward.formats.interface import ScanContext

RULE = "MW-PICKLE-EMBEDDED"
#: Largest embedded pickle read (decoded size); bigger payloads are only peeked at.
MAX_EMBEDDED_BYTES = 16 * 1024 * 1024
#: Pickles inside pickles inside pickles: deeper ones are not looked for.
MAX_DEPTH = 3
#: Encodings peeled off one payload (base64 of zlib of a pickle is two).
MAX_LAYERS = 3
#: Bytes of a long payload looked at before deciding to read it.
PEEK_BYTES = 64 * 1024
#: Decoded bytes sniffed.
SNIFF_BYTES = 4096
#: Pickles read back to back from one payload (torch's legacy format writes five).
MAX_STREAMS = 8
#: Shortest argument worth a look (the smallest dangerous pickle is longer).
MIN_LENGTH = 12

_B64 = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
#: Protocol 0 pickles start with a value push or a MARK and hold newlines.
_TEXT_STARTS = frozenset(b"(]}cIJKLMFGNSTUVX)PCi")


def _first_bytes(first: set[int]) -> frozenset[int]:
    """First bytes of `first`'s base64/hex encodings, layered, with `first` itself."""
    for _ in range(MAX_LAYERS):
        encoded = set()
        for byte in first:
            encoded.add(binascii.b2a_base64(bytes([byte, 0, 0]))[0])
            encoded.add(binascii.b2a_base64(bytes([byte, 0xFF, 0xFF]))[0])
            encoded.update(f"{byte:02x}{byte:02X}".encode()[::2])
        first |= encoded
    # Whitespace before base64/hex text is stripped.
    return frozenset(first | set(b" \t\r\n"))


#: First bytes of anything worth decoding: a pickle, zlib, and their base64/hex.
_FIRST = _first_bytes({0x80, 0x78, *_TEXT_STARTS})
#: First bytes that can only start a protocol 0 pickle (no encoding starts with them).
_TEXT_ONLY = _TEXT_STARTS - _first_bytes({0x80, 0x78})


@dataclass(frozen=True)
class _Found:
    """A decoded payload that sniffs as a pickle, and the encodings peeled to reach it."""

    data: bytes
    chain: tuple[str, ...]


@dataclass(frozen=True)
class _Pending:
    """What an embedded pickle would do, reported when the outer stream is done: only then
    is it known whether the outer stream itself deserialises that argument at load time."""

    offset: int
    where: str
    why: str
    evidence: str
    #: Its severity when the outer stream loads it: critical for a sink, high otherwise.
    loaded: Severity


class EmbeddedPickles:
    """Finds and scans the pickles embedded in one stream's arguments, `depth` levels down.

    `run` runs the outer stream's opcodes with embedded pickles scanned in passing;
    `finish` reports them once the outer stream's machine says which arguments it hands
    to a deserialiser at load time (`PickleMachine.loaded`).
    """

    def __init__(
        self,
        location: Location,
        ctx: ScanContext,
        depth: int = 1,
        outer: tuple[int, str] | None = None,
        via: tuple[str, ...] = (),
        pending: list[_Pending] | None = None,
    ) -> None:
        self._location = location
        self._ctx = ctx
        self._depth = depth
        #: For nested finders: the outermost argument's offset and opcode, where we report.
        self._outer = outer
        self._via = via
        self._pending: list[_Pending] = [] if pending is None else pending
        #: Offsets of the arguments read as pickles.
        self.scanned: set[int] = set()

    def run(
        self, machine: PickleMachine, source: ByteSource, until: Callable[[], bool] | None = None
    ) -> bool:
        """`machine.run` for a scan: kept arguments are checked (`check`) before their opcode
        runs, long ones (`large`) before they are skipped."""
        ctx = self._ctx
        return machine.run(
            source,
            ctx.config.limits,
            ctx.check_deadline,
            large=self.large,
            found=self.check,
            found_min=MIN_LENGTH,
            until=until,
        )

    def finish(self, loaded: dict[int, str]) -> None:
        """Report every embedded pickle: MEDIUM when only carried, at its own severity when
        the outer stream deserialises it (`loaded`: argument offset -> the helper)."""
        for item in self._pending:
            loader = loaded.get(item.offset)
            if loader is None:
                self._ctx.report(
                    RULE,
                    Severity.MEDIUM,
                    self._location.at(item.offset),
                    f"a pickle embedded as data ({item.where}) {item.why}; loading this file"
                    " does not run it, but whatever unpickles that data later does",
                    evidence=item.evidence,
                )
            else:
                self._ctx.report(
                    RULE,
                    item.loaded,
                    self._location.at(item.offset),
                    f"a pickle embedded as data ({item.where}) {item.why}, and this file hands"
                    f" that data to {loader} when it loads, which unpickles it; do not load"
                    " this file",
                    evidence=f"{item.evidence}; loaded by {loader}",
                )
        for offset, loader in sorted(loaded.items()):
            if offset not in self.scanned:
                self._ctx.report(
                    RULE,
                    Severity.HIGH,
                    self._location.at(offset),
                    f"this file hands data to {loader} when it loads, which deserialises it,"
                    " but the data does not read as a pickle modelward can follow; do not load"
                    " this file unless you know what that data is",
                    evidence=f"argument at offset {offset} loaded by {loader}",
                )

    # -- finding ---------------------------------------------------------------------

    def check(self, arg: bytes | str, opcode: str, offset: int) -> None:
        """A kept argument: decode and scan it when it holds a pickle."""
        first = ord(arg[0]) if isinstance(arg, str) else arg[0]
        if first not in _FIRST:
            return  # the common case, decided on one byte
        if first in _TEXT_ONLY and not _has_newline(arg):
            return  # could only be protocol 0, which needs newlines
        data = arg.encode("latin-1", "replace") if isinstance(arg, str) else arg
        found = _decode(data, self._ctx, full=True)
        if found is not None:
            self._scan(found, opcode, offset)

    def large(self, payload: LargePayload) -> None:
        """A long argument the walker is about to skip: peek, and read it if it is a pickle."""
        head = payload.peek(PEEK_BYTES)
        if len(head) < MIN_LENGTH or _decode(head, self._ctx, full=False) is None:
            return
        if payload.length > 2 * MAX_EMBEDDED_BYTES:  # hex doubles the size
            self._report_unread(payload)
            return
        found = _decode(payload.read(), self._ctx, full=True)
        if found is not None:
            self._scan(found, payload.opcode.name, payload.offset)

    def _report_unread(self, payload: LargePayload) -> None:
        offset, opcode = self._outer or (payload.offset, payload.opcode.name)
        self._ctx.report(
            RULE,
            Severity.MEDIUM,
            self._location.at(offset),
            f"a {payload.length}-byte {opcode} argument starts like a pickle but is larger than"
            f" {MAX_EMBEDDED_BYTES} bytes; it was not scanned, and runs if something loads it",
            evidence=f"{opcode} at offset {offset}: {payload.peek(16).hex()}",
        )

    # -- scanning --------------------------------------------------------------------

    def _scan(self, found: _Found, opcode: str, offset: int) -> None:
        """Walk the pickles back to back in `found` (torch's legacy format is five, then raw
        storage bytes), each on a fresh machine as each `pickle.load` would be."""
        outer = self._outer or (offset, opcode)
        via = (*self._via, f"{'+'.join(found.chain) or 'raw'} in {opcode}")
        policy = default_policy().with_allowed(self._ctx.config.allow_globals)
        self.scanned.add(offset)
        nested = (
            EmbeddedPickles(self._location, self._ctx, self._depth + 1, outer, via, self._pending)
            if self._depth < MAX_DEPTH
            else None
        )
        source = ByteSource(
            io.BytesIO(found.data), self._ctx.check_deadline, self._ctx.config.limits
        )
        limits = self._ctx.config.limits
        for _ in range(MAX_STREAMS):
            machine = PickleMachine(policy, limits.max_pickle_bytes)
            try:
                if nested is not None:
                    nested.run(machine, source)
                else:
                    machine.run(source, limits, self._ctx.check_deadline)
            except PickleDamage:
                self._add(machine, policy, outer, via)
                return  # what was seen before the damage is what a loader would have run
            self._add(machine, policy, outer, via)
            if not _is_pickle(source.peek(SNIFF_BYTES)):
                return

    def _add(
        self,
        machine: PickleMachine,
        policy: GlobalPolicy,
        outer: tuple[int, str],
        via: tuple[str, ...],
    ) -> None:
        offset = outer[0]
        where = " inside ".join(reversed(via))
        for imported in machine.imports:
            danger = _dangerous(imported, policy)
            if danger is not None:
                why, severity = danger
                evidence = f"{where} at offset {offset}: {imported.path} {_use(imported)}"
                self._pending.append(_Pending(offset, where, why, evidence, severity))
        for hidden in machine.unresolved:
            why = f"{hidden.what}; what it calls cannot be known before it runs"
            evidence = f"{where} at offset {offset}: {hidden.what}"
            self._pending.append(_Pending(offset, where, why, evidence, Severity.HIGH))


def _has_newline(arg: bytes | str) -> bool:
    return "\n" in arg if isinstance(arg, str) else b"\n" in arg


def _dangerous(imported: ImportedGlobal, policy: GlobalPolicy) -> tuple[str, Severity] | None:
    """Why an embedded import matters and how much when it runs, or None: deny-listed or a
    sink (critical), a call nothing vouches for (high)."""
    if imported.extension_code is not None or imported.dynamic:
        if imported.uses:
            return "imports a name that cannot be vetted", Severity.HIGH
        return None
    verdict = policy.verdict(imported.path)
    if verdict is GlobalVerdict.DENIED:
        why = f"imports {imported.path}, which can execute code or reach the system"
        return why, Severity.CRITICAL
    if verdict is GlobalVerdict.ALLOWED:
        return None
    known = knowledge.lookup(imported.module, imported.name)
    for use in imported.uses:
        judgement = known.judge(use) if known is not None else None
        if judgement is not None and judgement.outcome is Outcome.SINK:
            if policy.reviewed_road(judgement.sink):
                continue
            return f"uses {imported.path}, which reaches {judgement.sink}", Severity.CRITICAL
        if use is Use.CALL and (judgement is None or judgement.outcome is Outcome.UNKNOWN):
            return f"calls {imported.path}, which is on no list", Severity.HIGH
    return None


def _use(imported: ImportedGlobal) -> str:
    if imported.called:
        return f"called with {'; '.join(imported.call_args)}"
    return ", ".join(use.value for use in imported.uses) or "referenced only"


# -- decoding ------------------------------------------------------------------------


def _decode(data: bytes, ctx: ScanContext, *, full: bool) -> _Found | None:
    """Peel base64, hex and zlib layers off `data` until it sniffs as a pickle, or None.

    With `full` false, `data` is only the start of a payload: the answer says whether
    it is worth reading whole, and nothing is charged.
    """
    chain: list[str] = []
    for _ in range(MAX_LAYERS + 1):
        if _is_pickle(data):
            return _Found(data, tuple(chain))
        if len(chain) == MAX_LAYERS:
            return None
        decoded = _peel(data, ctx, full=full)
        if decoded is None:
            return None
        name, data = decoded
        chain.append(name)
    return None


def _is_pickle(data: bytes) -> bool:
    head = data[:SNIFF_BYTES]
    if head[:1] == b"\x80":
        return looks_like_pickle(head) and walk_head(head).ending != "damage"
    if head[:1] and head[0] in _TEXT_STARTS and b"\n" in head:
        return walk_head(head).ending in ("import", "call", "stop")
    return False


def _peel(data: bytes, ctx: ScanContext, *, full: bool) -> tuple[str, bytes] | None:
    """One layer of encoding off `data`: (its name, the decoded bytes), or None."""
    if len(data) >= 2 and data[0] == 0x78 and ((data[0] << 8) | data[1]) % 31 == 0:
        return _inflate(data, ctx, full=full)
    stripped = data.strip()
    if len(stripped) >= MIN_LENGTH and _HEX.fullmatch(stripped if full else stripped[:8192]):
        body = stripped if full else stripped[: 2 * SNIFF_BYTES]
        try:
            return "hex", binascii.unhexlify(body[: len(body) // 2 * 2])
        except binascii.Error:
            return None
    compact = stripped.replace(b"\n", b"").replace(b"\r", b"")
    if len(compact) >= MIN_LENGTH and _B64.fullmatch(compact if full else compact[:8192]):
        body = compact if full else compact[: (SNIFF_BYTES // 3 + 1) * 4]
        if not full:
            body = body[: len(body) // 4 * 4]
        try:
            decoded = binascii.a2b_base64(body.replace(b"-", b"+").replace(b"_", b"/"))
        except binascii.Error:
            return None
        return "base64", decoded
    return None


def _inflate(data: bytes, ctx: ScanContext, *, full: bool) -> tuple[str, bytes] | None:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_EMBEDDED_BYTES if full else SNIFF_BYTES)
    except zlib.error:
        return None
    if full:
        ctx.charge_decompressed(len(out))
    return "zlib", out
