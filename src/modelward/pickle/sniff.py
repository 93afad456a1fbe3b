"""Is it a pickle? Decided the way a loader decides: by walking it from byte 0.

`pickle.load` unpickles anything, `torch.load` the first pickle of any file that is not
a zip, `np.load(allow_pickle=True)` any file that is not `.npy`: none of them looks
for a magic number. So a file is a pickle when:

1. it starts with `PROTO` 2 to 5 (what `pickle.dumps` writes), or
2. a walk from byte 0 reaches a plausible import (GLOBAL, STACK_GLOBAL, INST whose
   module is one a loader could import: the standard library or a package the
   policy lists) or calls an imported global (REDUCE, NEWOBJ, OBJ, INST) before it
   fails, however printable the bytes are (`cbuiltins\\nexec\\n` followed by damage), or
3. it starts with an opcode that begins plain protocol 0/1 data and parses up to
   `STOP`, or through at least three opcodes to the end of what was read.

The walk is not limited to the sniffed head: when the head ends inside a long
argument (a first line longer than the head), it goes on through the stream, up to
`SNIFF_LIMIT` bytes; text that still parses as a pickle that far is a pickle too.
Ordinary text fails at once: a stray `a` or `t` needs a stack or a MARK, a GLOBAL
line of prose names no importable module.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import BinaryIO

from modelward.config import Limits
from modelward.pickle import knowledge
from modelward.pickle.machine import ImportedGlobal, PickleMachine
from modelward.pickle.opcodes import HIGHEST_PROTOCOL, OPCODES
from modelward.pickle.policy import GlobalVerdict, default_policy
from modelward.pickle.walker import ByteSource, PickleDamage, iter_opcodes

#: The head the dispatcher sniffs (`formats.interface.HEAD_SIZE`; not imported: formats import us).
HEAD_SIZE = 4096
#: Bytes walked past the head when the head ends inside an argument.
SNIFF_LIMIT = 16 * 1024 * 1024
#: What the symbolic machine may hold while sniffing.
_SNIFF_MEMORY = 64 * 1024 * 1024
#: First opcodes of plain protocol 0/1 data (rule 3): a value push or a MARK.
PLAIN_STARTS = frozenset(b"(]}cIJKLMFGNSTUVX)P")
#: Opcodes plain protocol 0/1 data must parse through to count as a pickle (rule 3).
MIN_PLAIN_OPCODES = 3
_IMPORTS = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
_CALLS = frozenset({"REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST"})


@dataclass(frozen=True)
class Walk:
    """How a sniffing walk ended.

    `ending` is `import` or `call` (rule 2), `stop` (clean to STOP), `truncated`
    (the bytes read ran out with no damage), `limit` (still parsing after
    `SNIFF_LIMIT` bytes) or `damage` (a loader would fail here).
    """

    ending: str
    opcodes: int
    first: int  # first byte, -1 when empty


def looks_like_pickle(head: bytes, more: Callable[[], BinaryIO] | None = None) -> bool:
    """Sniff a pickle of protocol 0 to 5 from its first bytes (`head`).

    `more`, when given, opens the whole stream, whose first `HEAD_SIZE` bytes are `head`:
    the walk can then go past the head when the head ends inside an argument, and a head
    shorter than `HEAD_SIZE` is known to be the whole stream.
    """
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= HIGHEST_PROTOCOL:
        return len(head) == 2 or head[2] in OPCODES
    if not head:
        return False
    cut = more is None or len(head) >= HEAD_SIZE
    walk = walk_head(head)
    if is_pickle_walk(walk, cut=cut):
        return True
    if walk.ending == "truncated" and cut and more is not None and looks_like_text(head):
        # The head ended mid-argument (a long first line): read on, as a loader would.
        # Only text-like heads: a binary one not claimed here is an unknown format
        # (fail closed), never silently text.
        with more() as stream:
            walk = walk_stream(stream, SNIFF_LIMIT)
        return walk.ending in ("import", "call", "stop", "limit")
    return False


def is_pickle_walk(walk: Walk, *, cut: bool = True) -> bool:
    """Rules 2 and 3 for a walk over a head; `cut`: more bytes follow the head."""
    if walk.ending in ("import", "call"):
        return True
    if walk.first not in PLAIN_STARTS:
        return False
    if walk.ending == "stop":
        return True
    # Without STOP, plain data only counts when the head was cut short: a whole small
    # file that never reaches STOP is rejected by every loader, and imports nothing.
    return cut and walk.ending == "truncated" and walk.opcodes >= MIN_PLAIN_OPCODES


def parses_cleanly(head: bytes, min_opcodes: int) -> bool:
    """True when `head` reads as a pickle up to STOP, or up to its end after `min_opcodes`
    (or reaches a plausible import or a call on the way)."""
    walk = walk_head(head)
    if walk.ending in ("import", "call", "stop"):
        return True
    return walk.ending == "truncated" and walk.opcodes >= min_opcodes


@lru_cache(maxsize=16)
def walk_head(head: bytes) -> Walk:
    """`walk_stream` over `head` alone. Kept for the last few heads: the registry's
    pre-checks, joblib's and pickle's `detect` all sniff the same head of a file."""
    return walk_stream(io.BytesIO(head), len(head) + 1)


def walk_stream(stream: BinaryIO, limit: int) -> Walk:
    """Walk a pickle from `stream`'s position until an import or call, STOP, damage, the
    end of the bytes, or `limit` bytes."""
    capped = _Capped(stream, limit)
    limits = Limits()
    source = ByteSource(io.BufferedReader(capped), _no_deadline, limits)
    machine = PickleMachine(default_policy(), _SNIFF_MEMORY)
    peeked = source.peek(1)
    first = peeked[0] if peeked else -1
    count = 0
    try:
        for offset, opcode, arg in iter_opcodes(source, limits, _no_deadline):
            count += 1
            if isinstance(arg, tuple) and not all(_is_import_name(part) for part in arg):
                return Walk("damage", count, first)  # no import could name this: prose
            machine.feed(offset, opcode, arg)
            if opcode.name in _CALLS and any(g.uses for g in machine.imports):
                return Walk("call", count, first)
            if opcode.name in _IMPORTS and _plausible(machine.imports[-1]):
                return Walk("import", count, first)
    except PickleDamage as exc:
        if exc.truncated:
            return Walk("limit" if capped.capped else "truncated", count, first)
        return Walk("damage", count, first)
    return Walk("stop", count, first)


def _plausible(imported: ImportedGlobal) -> bool:
    """An import a loader could resolve: a standard module, or one the policy or the
    knowledge base names."""
    module, name = imported.module, imported.name
    if imported.dynamic:
        return True  # a computed name: something ran to build it
    if not (_is_import_name(module) and _is_import_name(name)):
        return False
    if default_policy().verdict(f"{module}.{name}") is not GlobalVerdict.UNKNOWN:
        return True
    return module.split(".", 1)[0] in _known_top_modules()


def _is_import_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


@cache
def _known_top_modules() -> frozenset[str]:
    policy = default_policy()
    listed = policy.allow | policy.deny_globals | policy.deny_modules | set(policy.wrappers)
    tops = {path.split(".", 1)[0] for path in listed}
    return frozenset(sys.stdlib_module_names) | knowledge.covered_modules() | tops


def looks_like_text(head: bytes) -> bool:
    """UTF-8 without NULs; a multi-byte character cut at the end of the head is still text."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3
    return True


def _no_deadline() -> None:
    """Sniffing has no scan context; `SNIFF_LIMIT` bounds it."""


class _Capped(io.RawIOBase):
    """At most `limit` bytes of `inner`; `capped` tells whether the limit stopped it."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._left = limit
        self.capped = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            self.capped = True
            return 0
        data = self._inner.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


__all__ = [
    "MIN_PLAIN_OPCODES",
    "PLAIN_STARTS",
    "SNIFF_LIMIT",
    "Walk",
    "is_pickle_walk",
    "looks_like_pickle",
    "parses_cleanly",
    "walk_head",
    "walk_stream",
]
