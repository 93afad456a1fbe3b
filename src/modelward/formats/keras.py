"""Keras 3 `.keras` models: a zip whose `config.json` is analysed (`analysis.keras_config`)."""

from __future__ import annotations

from modelward.analysis.keras_config import analyse_keras_json
from modelward.formats.interface import Blob, ScanContext
from modelward.formats.zip import ZIPFILE, read_zip, scan_members, zip_reading

_CONFIG_MEMBERS = ("config.json",)
_WEIGHTS_MEMBER = "model.weights.h5"


def _is_hdf5(blob: Blob, ctx: ScanContext) -> bool:
    from modelward.formats._magic import HDF5_SIGNATURE

    with ctx.open(blob, limit=len(HDF5_SIGNATURE)) as stream:
        return stream.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


class KerasScanner:
    """The Keras 3 `.keras` zip: `config.json` analysed, every other member dispatched.

    Keras needs only `config.json` to rebuild a model, so any zip with one at the top
    and no pickles (those are PyTorch's) is read as Keras: a stripped archive must not
    pass as a plain zip whose config is mere text.
    """

    name = "keras"

    def detect(self, blob: Blob, head: bytes) -> bool:
        # keras opens members with zipfile, by the name zipfile files them under (cut at NUL).
        members = zip_reading(blob, head, ZIPFILE)
        names = None if members is None else [m.lookup for m in members]
        return (
            names is not None
            and "config.json" in names
            and not any(n.endswith(".pkl") for n in names)
        )

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with read_zip(blob, ctx) as archive:
            others = []
            for member in archive.members:
                name = member.lookup or member.name  # zipfile's name for it (cut at NUL)
                if (
                    name == _WEIGHTS_MEMBER
                    and not member.is_encrypted
                    and _is_hdf5(archive.member_blob(member), ctx)
                ):
                    # Keras reads only datasets from it; its attributes never reach a loader.
                    continue
                if name in _CONFIG_MEMBERS and not member.is_encrypted:
                    member_blob = archive.member_blob(member)
                    limit = ctx.config.limits.max_header_bytes
                    with ctx.open(member_blob) as stream:
                        data = stream.read(limit + 1)
                    analyse_keras_json(data, member_blob.location, ctx, source=member.name)
                else:
                    others.append(member)
            scan_members(archive, ctx, others)


KERAS = KerasScanner()
