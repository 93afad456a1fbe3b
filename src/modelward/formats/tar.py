"""Tar archives, scanned member by member without extracting anything to disk.

A member of a tar on disk is a window onto a fresh `open()` of the file at the member's data:
no copy. A member of a tar that is itself decompressed (or inside another container) is read
once, as the tar is walked: into memory when small, else spooled to a temporary file deleted
right after its scan (disk use: one member per nesting level, each under
`max_decompressed_bytes`), because re-reading it from the tar would decompress from the start
per open.
"""

from __future__ import annotations

import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

from modelward.findings import Location, Severity
from modelward.formats._magic import tar_header_ok
from modelward.formats._streams import ByteWindow
from modelward.formats.compressed import count_zeros, report_bomb
from modelward.formats.interface import HEAD_SIZE, IN_MEMORY_BYTES, Blob, ScanAborted, ScanContext
from modelward.formats.pickle import looks_like_pickle, scan_pickle_stream

#: Bytes one GNU long-name or pax extended header may hold; `tarfile` would read any size.
MAX_TAR_EXTENDED_HEADER = 1024**2
_CHUNK = 1024**2

_TAR_EXTENDED_TYPES = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE}
    | {tarfile.SOLARIS_XHDTYPE}
)


class BoundedTarInfo(tarfile.TarInfo):
    """Refuses extended headers `tarfile` would otherwise read whole into memory."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _TAR_EXTENDED_TYPES and self.size > MAX_TAR_EXTENDED_HEADER:
            raise ScanAborted(
                "MW-ARCHIVE-MALFORMED",
                f"tar extended header of {self.size} bytes at offset {self.offset}"
                f" (more than {MAX_TAR_EXTENDED_HEADER}); rest of the archive not scanned",
            )
        return super()._proc_member(archive)  # type: ignore[misc, no-any-return]


def member_path_escapes(name: str) -> bool:
    """True for an absolute path or one whose `..` parts climb out of the archive root."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return True
    return posixpath.normpath(name).split("/")[0] == ".."


def _open_tar(stream: BinaryIO) -> tarfile.TarFile:
    """Random access when the stream seeks (skips member data), streaming otherwise."""
    if stream.seekable():
        return tarfile.TarFile(fileobj=stream, tarinfo=BoundedTarInfo)
    return tarfile.open(fileobj=stream, mode="r|", tarinfo=BoundedTarInfo)


class TarScanner:
    """POSIX, GNU and v7 tar: every member checked by its header, then scanned by content."""

    name = "tar"

    def detect(self, blob: Blob, head: bytes) -> bool:
        # ustar/GNU headers also carry a magic at 257, v7 ones do not; all carry the checksum.
        return len(head) >= 512 and tar_header_ok(head)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        self._check_pickle_polyglot(blob, ctx)
        try:
            with ctx.open(blob) as stream, _open_tar(stream) as archive:
                if self._walk(archive, blob, ctx):
                    self._check_trailing(stream, archive.offset, blob, ctx)
        except ScanAborted as exc:
            if exc.rule_id != "MW-ARCHIVE-MALFORMED":
                raise
            ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            ctx.report(
                "MW-ARCHIVE-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                "tar archive is corrupt or truncated; members after this point are not scanned",
                evidence=f"{type(exc).__name__}: {exc}"[:300],
            )

    def _check_pickle_polyglot(self, blob: Blob, ctx: ScanContext) -> None:
        """A first header whose name field is a protocol 0 pickle is also a pickle file.

        `pickle.load` would run it, and tar is detected first, so scan it as a pickle too.
        """
        with ctx.open(blob) as stream:
            if not looks_like_pickle(stream.read(HEAD_SIZE)):
                return
        ctx.report(
            "MW-ARCHIVE-POLYGLOT",
            Severity.HIGH,
            blob.location.at(0),
            "file is both a tar archive and a pickle; pickle loaders run the pickle at its"
            " start, which is scanned as well",
        )
        with ctx.open(blob) as stream:
            scan_pickle_stream(stream, blob.location, ctx, max_streams=1)

    def _walk(self, archive: tarfile.TarFile, blob: Blob, ctx: ScanContext) -> bool:
        """Check and scan every member; False when a limit stopped the walk early."""
        limits = ctx.config.limits
        count = 0
        declared = 0
        for member in archive:
            ctx.check_deadline()
            count += 1
            if count > limits.max_members:
                ctx.report(
                    "MW-ARCHIVE-TOO-MANY-MEMBERS",
                    Severity.MEDIUM,
                    blob.location,
                    f"archive holds more than {limits.max_members} members; the rest are not"
                    " scanned",
                )
                return False
            # Only headers read so far are needed; tarfile would otherwise keep every one.
            archive.members.clear()  # type: ignore[attr-defined]
            location = blob.location.member(member.name)
            self._check_member(member, location, ctx)
            if not member.isreg() or member.issparse():
                continue
            if member.offset_data + member.size > blob.size:
                ctx.report(
                    "MW-ARCHIVE-MALFORMED",
                    Severity.MEDIUM,
                    location,
                    f"member claims {member.size} bytes but the archive ends first; not scanned",
                )
                return False
            declared += member.size
            if declared > limits.max_decompressed_bytes:
                report_bomb(ctx, blob.location, blob.size, declared, limits)
                return False
            with self._member_blob(archive, member, blob, location, ctx) as member_blob:
                ctx.scan_member(member_blob)
        return True

    def _check_trailing(self, stream: BinaryIO, end: int, blob: Blob, ctx: ScanContext) -> None:
        """Bytes after the end-of-archive blocks are no tar member, yet zip readers see them.

        A zip appended to a tar is what `torch.load` would read: it is scanned as a member.
        """
        size = blob.size - end
        if stream.seekable():
            stream.seek(end)  # where the walk stopped: no re-reading
            skipped = count_zeros(stream, ctx)
        else:
            with ctx.counted(cast(BinaryIO, ByteWindow(blob.open, end, size))) as rest:
                skipped = count_zeros(rest, ctx)
        if skipped >= size:
            return
        start = end + skipped
        ctx.report(
            "MW-ARCHIVE-TRAILING-DATA",
            Severity.MEDIUM,
            blob.location.at(start),
            f"{blob.size - start} bytes follow the end of the tar archive; tar readers ignore"
            " them but other readers (zip) may load them; scanned as their own member",
        )
        location = blob.location.member("<after-tar>")
        ctx.scan_member(
            Blob(
                location,
                blob.size - start,
                lambda: cast(BinaryIO, ByteWindow(blob.open, start, blob.size - start)),
            )
        )

    def _check_member(self, member: tarfile.TarInfo, location: Location, ctx: ScanContext) -> None:
        if member_path_escapes(member.name):
            ctx.report(
                "MW-ARCHIVE-PATH-TRAVERSAL",
                Severity.HIGH,
                location,
                "member path is absolute or climbs out of the extraction folder with '..';"
                " extracting it writes outside the target folder",
                evidence=member.name[:300],
            )
        if member.issym() or member.islnk():
            kind = "symlink" if member.issym() else "hard link"
            # A symlink resolves from its own folder; a hard link names another member.
            base = posixpath.dirname(member.name) if member.issym() else ""
            target = posixpath.join(base, member.linkname) if base else member.linkname
            if member_path_escapes(target):
                ctx.report(
                    "MW-ARCHIVE-LINK-ESCAPE",
                    Severity.HIGH,
                    location,
                    f"{kind} points outside the archive; extracting it lets later members or"
                    " loaders read or overwrite files elsewhere",
                    evidence=f"{member.name} -> {member.linkname}"[:300],
                )
            else:
                ctx.report(
                    "MW-ARCHIVE-LINK",
                    Severity.LOW,
                    location,
                    f"{kind} inside the archive (target stays inside; not scanned twice)",
                    evidence=f"{member.name} -> {member.linkname}"[:300],
                )
        elif member.ischr() or member.isblk() or member.isfifo():
            ctx.report(
                "MW-ARCHIVE-SPECIAL-MEMBER",
                Severity.MEDIUM,
                location,
                "device or FIFO member: no model needs one, and extracting it can hang or"
                " touch hardware",
                evidence=member.name[:300],
            )
        elif member.issparse():
            ctx.report(
                "MW-ARCHIVE-UNSUPPORTED-MEMBER",
                Severity.MEDIUM,
                location,
                "sparse tar member (its holes can expand without limit); not scanned",
            )

    @contextmanager
    def _member_blob(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        blob: Blob,
        location: Location,
        ctx: ScanContext,
    ) -> Iterator[Blob]:
        """The member's bytes, readable as often as nested scanners need, one pass over the tar.

        A tar on disk gives windows onto the file. Otherwise (a decompressed or nested
        tar) small members are read into memory and large ones spooled to a temporary
        file, deleted after the scan: re-reading them from the tar would decompress it
        again from its start for every open.
        """
        start, size = member.offset_data, member.size
        if blob.fs_path is not None:
            yield Blob(location, size, lambda: cast(BinaryIO, ByteWindow(blob.open, start, size)))
            return
        data = archive.extractfile(member)
        assert data is not None  # regular members always have data
        if size <= IN_MEMORY_BYTES:
            yield Blob.from_bytes(location, data.read())
            return
        with tempfile.NamedTemporaryFile(prefix="modelward-", suffix=".member") as spool:
            while chunk := data.read(_CHUNK):
                ctx.check_deadline()
                spool.write(chunk)
            spool.flush()
            path = Path(spool.name)
            yield Blob(location, size, lambda: path.open("rb"))


TAR = TarScanner()
