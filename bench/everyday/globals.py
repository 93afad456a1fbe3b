"""Which globals the pickles in a folder import, and what the stream does with each.

    python bench/everyday/globals.py bench/corpus/everyday [--markdown OUT.md]

A small symbolic walk over `pickletools.genops` (never unpickling): every GLOBAL,
STACK_GLOBAL or INST is followed through the stack and the memo to the opcode that consumes
it, and recorded as called via REDUCE, instantiated via NEWOBJ/NEWOBJ_EX/OBJ/INST, given state
via BUILD, filled via SETITEMS/APPENDS, passed as an argument to another global, or only
referenced (stored as a value). Pickles are found in plain files, zip members (torch, .keras,
.pt2), object `.npy` files and compressed joblib dumps. A helper for the people tuning the
scanner's precision; not part of modelward.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import lzma
import pickletools
import sys
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 64 * 1024 * 1024


@dataclass
class Sym:
    """A stack item: the globals it is, or was built from, or contains."""

    name: str | None = None  # an imported global itself
    made_by: str | None = None  # the global whose call/instantiation produced this object
    inside: frozenset[str] = field(default_factory=frozenset)  # globals inside (a tuple/list)

    def all(self) -> frozenset[str]:
        own = {self.name} if self.name else set()
        return frozenset(own) | self.inside


MARK = object()


def uses_in(data: bytes) -> list[tuple[str, str]]:
    """(global, use) pairs of one pickle stream; a stream that breaks ends the walk quietly."""
    stack: list[object] = []
    memo: dict[int, object] = {}
    out: list[tuple[str, str]] = []
    referenced: set[str] = set()
    consumed: set[str] = set()

    def pop_mark() -> list[object]:
        items: list[object] = []
        while stack:
            item = stack.pop()
            if item is MARK:
                break
            items.append(item)
        return items[::-1]

    def inside(items: list[object]) -> frozenset[str]:
        found: set[str] = set()
        for it in items:
            if isinstance(it, Sym):
                found |= it.all()
        return frozenset(found)

    def note(sym: object, use: str) -> None:
        if isinstance(sym, Sym) and sym.name:
            out.append((sym.name, use))
            consumed.add(sym.name)

    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name in ("GLOBAL", "INST"):
                mod, _, qual = str(arg).partition(" ")
                sym = Sym(name=f"{mod}.{qual}")
                referenced.add(sym.name or "")
                if name == "INST":
                    pop_mark()
                    note(sym, "INST (called with stream args)")
                    stack.append(Sym(made_by=sym.name))
                else:
                    stack.append(sym)
            elif name == "STACK_GLOBAL":
                qual_s = stack.pop() if stack else None
                mod_s = stack.pop() if stack else None
                mod = mod_s if isinstance(mod_s, str) else "?"
                qual = qual_s if isinstance(qual_s, str) else "?"
                sym = Sym(name=f"{mod}.{qual}")
                referenced.add(sym.name or "")
                stack.append(sym)
            elif name in (
                "SHORT_BINUNICODE",
                "BINUNICODE",
                "UNICODE",
                "BINUNICODE8",
                "SHORT_BINSTRING",
                "BINSTRING",
                "STRING",
            ):
                stack.append(str(arg))
                strings.append(str(arg))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = stack[-1] if stack else None
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(int(arg)))
            elif name == "MARK":
                stack.append(MARK)
            elif name == "REDUCE":
                args = stack.pop() if stack else None
                func = stack.pop() if stack else None
                if isinstance(func, Sym) and func.name:
                    note(func, "REDUCE (called)")
                    for inner in args.all() if isinstance(args, Sym) else ():
                        out.append((inner, f"argument of {func.name}"))
                        consumed.add(inner)
                    made = func.name
                    if func.name.endswith("._reconstructor") and isinstance(args, Sym):
                        # copyreg._reconstructor(cls, object, state): an instance of cls.
                        classes = sorted(args.all() - {"builtins.object", "__builtin__.object"})
                        made = classes[0] if len(classes) == 1 else made
                    stack.append(Sym(made_by=made))
                else:
                    stack.append(Sym(made_by="?"))
            elif name == "NEWOBJ":
                stack.pop() if stack else None
                cls = stack.pop() if stack else None
                note(cls, "NEWOBJ (cls.__new__)")
                stack.append(Sym(made_by=cls.name if isinstance(cls, Sym) else "?"))
            elif name == "NEWOBJ_EX":
                del stack[-2:]
                cls = stack.pop() if stack else None
                note(cls, "NEWOBJ_EX (cls.__new__)")
                stack.append(Sym(made_by=cls.name if isinstance(cls, Sym) else "?"))
            elif name == "OBJ":
                items = pop_mark()
                if items:
                    note(items[0], "OBJ (called with stream args)")
                    cls = items[0]
                    stack.append(Sym(made_by=cls.name if isinstance(cls, Sym) else "?"))
            elif name == "BUILD":
                state = stack.pop() if stack else None
                obj = stack[-1] if stack else None
                if isinstance(obj, Sym) and obj.made_by and obj.made_by != "?":
                    out.append((obj.made_by, "BUILD (state set on its instance)"))
                if isinstance(obj, Sym) and obj.name:
                    note(obj, "BUILD on the global itself")
                for inner in state.all() if isinstance(state, Sym) else ():
                    consumed.add(inner)
            elif name in ("SETITEM", "SETITEMS", "APPEND", "APPENDS", "ADDITEMS"):
                if name in ("SETITEM",):
                    items = [stack.pop(), stack.pop()] if len(stack) >= 2 else []
                elif name == "APPEND":
                    items = [stack.pop()] if stack else []
                else:
                    items = pop_mark()
                target = stack[-1] if stack else None
                if isinstance(target, Sym):
                    if target.made_by and target.made_by != "?":
                        out.append((target.made_by, f"{name} on its instance"))
                    stack[-1] = Sym(target.name, target.made_by, target.inside | inside(items))
            elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
                stack.append(Sym(inside=inside(pop_mark())))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = stack[-n:] if n else []
                del stack[len(stack) - n :]
                stack.append(Sym(inside=inside(items)))
            elif name in ("EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
                stack.append(Sym())
            elif name == "POP":
                stack.pop() if stack else None
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1] if stack else None)
            elif name in ("PERSID", "BINPERSID"):
                if name == "BINPERSID":
                    stack.pop() if stack else None
                stack.append(Sym(made_by="persistent_load"))
            elif name == "STOP":
                break
            elif name in ("PROTO", "FRAME"):
                continue
            else:
                # Any other opcode pushes one plain value (numbers, bytes, None, bools...).
                before = len(op.stack_before)
                for _ in range(min(before, len(stack))):
                    stack.pop()
                if op.stack_after:
                    stack.append(None)
    except Exception:  # a stream that breaks (joblib array bytes) ends the walk
        pass
    for g in sorted(referenced - consumed):
        out.append((g, "referenced only (stored as a value)"))
    return out


def pickles_in(path: Path) -> Iterator[tuple[str, bytes]]:
    """(label, pickle bytes) for every pickle stream a file holds, best effort."""
    if path.stat().st_size > MAX_BYTES:
        return
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.file_size > MAX_BYTES:
                    continue
                member = zf.read(info)
                if info.filename.endswith((".pkl", ".pickle")) or _is_pickle(member):
                    yield f"{path.name}:{info.filename}", member
        return
    if data[:6] == b"\x93NUMPY":
        major = data[6]
        size = int.from_bytes(data[8:10] if major == 1 else data[8:12], "little")
        start = (10 if major == 1 else 12) + size
        if b"'O'" in data[:start] or b"|O" in data[:start] or _is_pickle(data[start:]):
            yield path.name, data[start:]
        return
    for opener in (zlib.decompress, gzip.decompress, bz2.decompress, lzma.decompress):
        try:
            raw = opener(data[data.find(b"x") :] if opener is zlib.decompress else data)
        except Exception:  # not this compression
            continue
        if _is_pickle(raw):
            yield path.name, raw
            return
    if _is_pickle(data):
        yield path.name, data


def _is_pickle(data: bytes) -> bool:
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    return data[:1] in (b"c", b"(", b"]", b"}") and data.rstrip()[-1:] == b"."


def collect(root: Path) -> dict[str, dict[str, set[str]]]:
    """global -> use -> files (relative to root)."""
    table: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        for _label, data in pickles_in(path):
            for name, use in uses_in(data):
                table[name][use].add(rel)
    return table


def markdown(table: dict[str, dict[str, set[str]]], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| global | how used | files | example |",
        "| --- | --- | --- | --- |",
    ]
    for name in sorted(table):
        for use in sorted(table[name]):
            files = sorted(table[name][use])
            lines.append(f"| `{name}` | {use} | {len(files)} | `{files[0]}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--title", default="Imported globals and how the stream uses them")
    args = parser.parse_args(argv)
    text = markdown(collect(args.root), args.title)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
