"""7z archives: recognised by their signature; read by `_sevenzip_archive` (py7zr), which is
imported only when a 7z file is scanned."""

from __future__ import annotations

from modelward.formats.interface import Blob, ScanContext

MAGIC = b"7z\xbc\xaf\x27\x1c"


class SevenZipScanner:
    """7z archives: listing checked first, then every member scanned by content."""

    name = "7z"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        from modelward.formats._sevenzip_archive import scan_7z

        scan_7z(blob, ctx)


SEVEN_ZIP = SevenZipScanner()

__all__ = ["MAGIC", "SEVEN_ZIP", "SevenZipScanner"]
