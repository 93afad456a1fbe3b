"""Sniffing never demotes a pickle: what a loader would unpickle is scanned as a pickle.

Each evasion is built twice at test time: a harmless twin that the real C unpickler
loads (its call returns a data marker), proving a loader reads past the evasion to the
call, and the malicious version (`os.system('true')`, never loaded), which must be
scanned as a pickle and flagged. Text stays text: the repository's own text files,
the installed packages' text files and random printable text.
"""

from __future__ import annotations

import io
import os
import pickle
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelward
from fixtures.pickles import global_
from modelward.findings import ScanResult, Severity
from modelward.pickle.sniff import SNIFF_LIMIT, looks_like_pickle, walk_head

#: Byte strings that push exactly one value (then POP), spelled as a loader accepts them
#: but as modelward's sniffer did not expect: first opcodes it did not list, base-0
#: integers, NUL-terminated floats, first lines longer than the sniffed head.
PREFIXES = {
    "hex-int": b"I0x10\n0",
    "octal-int": b"I010\n0",
    "underscore-int": b"I 1_000 \n0",
    "nul-int": b"I7\x00anything\n0",
    "hex-long": b"L0x10L\n0",
    "nul-float": b"F1.5\x00junk\n0",
    "short-binbytes-first": b"C\x03abc0",
    "binunicode-first": b"X\x05\x00\x00\x00hello0",
    "binint-first": b"J\x01\x00\x00\x000",
    "proto-1": b"\x80\x01",
    "proto-0": b"\x80\x00",
    "long-string-line": b"S'" + b"a" * 10_000 + b"'\n0",
    "long-unicode-line": b"V" + b"a" * 10_000 + b"\n0",
    "long-whitespace-int": b"I" + b" " * 10_000 + b"1\n0",
    "long-persid-free-line": b"V" + b"word " * 3000 + b"\n0",
    "empty-tuple-first": b")0",
    "memo-spelling": b"I5\np 0 \n0g0_0\n0",
}


def call(prefix: bytes, module: str, name: str, arg: str) -> bytes:
    return prefix + global_(module, name) + b"(S'" + arg.encode() + b"'\ntR."


def scan_file(tmp_path: Path, data: bytes) -> ScanResult:
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    [result] = modelward.scan(path).results
    return result


@pytest.mark.parametrize("name", sorted(PREFIXES))
def test_loader_reaches_the_call_and_modelward_flags_it(name: str, tmp_path: Path) -> None:
    prefix = PREFIXES[name]
    twin = call(prefix, "builtins", "str", "twin-marker")
    assert pickle.loads(twin) == "twin-marker"  # the real loader reads past the evasion
    result = scan_file(tmp_path, call(prefix, "os", "system", "true"))
    assert result.format == "pickle"
    assert any(
        f.rule_id == "MW-PICKLE-DANGEROUS-GLOBAL" and f.severity is Severity.CRITICAL
        for f in result.findings
    ), result.findings


class _Recorder(pickle.Unpickler):
    """An unpickler that records what it is asked to import and imports nothing."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.imported: list[tuple[str, str]] = []

    def find_class(self, module: str, name: str) -> object:
        self.imported.append((module, name))
        return str


@pytest.mark.parametrize(
    "damage",
    [b"\xff\xff junk", b"(S'x'\ntR\x00garbage", b"\n", b"", b"a" * 5000],
    ids=["bad-opcode", "bad-after-call", "newline", "truncated", "long-text"],
)
def test_broken_stream_after_a_dangerous_global_is_that_import(
    damage: bytes, tmp_path: Path
) -> None:
    data = b"cbuiltins\nexec\n" + damage
    loader = _Recorder(data)
    with pytest.raises(Exception):  # noqa: B017 - any unpickling error: the stream is broken
        loader.load()
    assert loader.imported == [("builtins", "exec")]  # ...after the import was resolved
    result = scan_file(tmp_path, data)
    assert result.format == "pickle"
    assert any(
        f.rule_id in ("MW-PICKLE-DANGEROUS-GLOBAL", "MW-PICKLE-DANGEROUS-REFERENCE")
        and f.evidence is not None
        and f.evidence.startswith("builtins.exec")
        for f in result.findings
    ), result.findings


@pytest.mark.parametrize("protocol", range(6))
def test_broken_stream_after_a_global_every_protocol(protocol: int, tmp_path: Path) -> None:
    data = pickle.dumps(os.system, protocol=protocol)[:-1] + b"\xff"
    result = scan_file(tmp_path, data)
    assert result.format == "pickle"
    assert any((f.evidence or "").startswith("posix.system") for f in result.findings)


def test_walk_goes_past_the_head_but_not_past_the_limit(tmp_path: Path) -> None:
    long_line = b"V" + b"x" * (SNIFF_LIMIT + 10) + b"\n"
    head = long_line[:4096]
    assert not looks_like_pickle(head)  # the head alone cannot tell
    assert looks_like_pickle(head, lambda: io.BytesIO(long_line))  # still a pickle at 16 MiB
    payload = b"V" + b"x" * 100_000 + b"\n0" + global_("os", "system") + b"(S'true'\ntR."
    assert looks_like_pickle(payload[:4096], lambda: io.BytesIO(payload))


def test_binary_head_is_not_walked_past_the_head() -> None:
    data = b"B\xff\xff\xff\x00" + b"\x00" * 5000
    assert not looks_like_pickle(data[:4096], lambda: io.BytesIO(data))


@pytest.mark.parametrize(
    "text",
    [
        b"cat\ndog\nbird\nfish\n",  # labels.txt: `c` + two identifiers, no importable module
        b"class Model:\n    pass\n",
        b"copyright 2024\n",
        b'{"a": 1}\n',
        b"# Title\n\nSome text.\n",
        b"Version 1.0\nFixed things\n",
        b"I think therefore I am\n",
        b"Long first line " * 1000 + b"\nthen more\n",
    ],
)
def test_text_stays_text(text: bytes) -> None:
    assert not looks_like_pickle(text[:4096], lambda: io.BytesIO(text))


def test_repository_and_installed_text_files_stay_text() -> None:
    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    files = [root / f for f in listed if (root / f).is_file()]
    site = Path(pickle.__file__).parent  # the standard library's own sources and docs
    files += sorted(site.glob("*.py"))[:400]
    claimed = [
        str(f)
        for f in files
        if not f.read_bytes()[:2].startswith(b"\x80")
        and looks_like_pickle(f.read_bytes()[:4096], f.open)
    ]
    assert claimed == []


_WORDS = st.text(alphabet=string.ascii_letters + string.digits, min_size=1)
_PROSE = st.lists(
    st.lists(_WORDS, min_size=2, max_size=12).map(" ".join), min_size=1, max_size=20
).map(lambda lines: ("\n".join(lines) + "\n").encode())


@settings(max_examples=300, deadline=None)
@given(_PROSE)
def test_prose_is_never_a_pickle(data: bytes) -> None:
    assert not looks_like_pickle(data[:4096], lambda: io.BytesIO(data))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=9, max_codepoint=126), max_size=300))
def test_random_printable_text_never_reaches_an_import(text: str) -> None:
    data = text.encode()
    # Plain protocol 0 data (`N.`) can be spelled in printable bytes; an import cannot
    # be reached by chance.
    assert walk_head(data).ending not in ("import", "call")


def test_head_size_is_the_dispatchers() -> None:
    from modelward.formats import interface as base
    from modelward.pickle import sniff

    assert sniff.HEAD_SIZE == base.HEAD_SIZE
