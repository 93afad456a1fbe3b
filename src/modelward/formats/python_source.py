"""Python source files (`modeling_*.py` shipped for `trust_remote_code`, scripts in a repo).

Python source has no magic bytes, so this is the one scanner that takes the
file name as its hint: a `.py` name and text content. README, JSON and other
text files therefore stay plain `text`. The analysis itself is `pycode`'s.
"""

from __future__ import annotations

from importlib.util import decode_source

from modelward.analysis.pycode import MAX_SOURCE_BYTES, scan_python_source
from modelward.findings import Severity
from modelward.formats.interface import Blob, ScanContext


class PythonSourceScanner:
    """A `.py` file whose bytes are text, analysed with `ast` and never imported."""

    name = "python-source"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return blob.name.lower().endswith(".py") and b"\x00" not in head

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with ctx.open(blob, limit=MAX_SOURCE_BYTES + 1) as stream:
            raw = stream.read(MAX_SOURCE_BYTES + 1)
        try:
            # Honours a PEP 263 coding line the way the interpreter would.
            source = decode_source(raw)
        except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
            ctx.report(
                "MW-PYCODE-UNPARSEABLE",
                Severity.MEDIUM,
                blob.location,
                "Python source file is not valid text in its declared encoding; not analysed",
                evidence=f"{type(exc).__name__}: {exc}"[:300],
            )
            return
        scan_python_source(source, blob.location, ctx, context="Python source file")


PYTHON_SOURCE = PythonSourceScanner()
