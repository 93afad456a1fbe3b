"""NumPy `.npz` archives: a zip of `.npy` files, each scanned by its content."""

from __future__ import annotations

from modelward.formats.interface import Blob, ScanContext
from modelward.formats.zip import ZIPFILE, read_zip, scan_members, zip_reading


class NpzScanner:
    """`.npz`: a zip whose members are all `.npy` files; each is scanned by content."""

    name = "npz"

    def detect(self, blob: Blob, head: bytes) -> bool:
        # np.load reads an .npz with zipfile, by the names zipfile files members under.
        members = zip_reading(blob, head, ZIPFILE)
        names = [m.lookup for m in members or ()]
        return bool(names) and all(n.endswith(".npy") for n in names)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with read_zip(blob, ctx) as archive:
            scan_members(archive, ctx, archive.members)


NPZ = NpzScanner()
