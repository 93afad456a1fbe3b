"""Upload spools (swept after a killed process, kept while their process lives) and names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelward.service.uploads import UploadSpool, display_filename

#: A process that takes a spool under argv[1], leaves a half-written upload, and is killed.
HOLD_SPOOL = """
import os, signal, sys
from pathlib import Path
from modelward.service.uploads import UploadSpool
spool = UploadSpool(Path(sys.argv[1]))
(spool.path / "upload-x").mkdir()
(spool.path / "upload-x" / "body").write_bytes(b"half an upload")
print(spool.path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_spool_of_a_killed_process_is_swept_at_the_next_start(tmp_path: Path) -> None:
    base = tmp_path / "spool"
    done = subprocess.run(
        [sys.executable, "-c", HOLD_SPOOL, str(base)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    left = Path(done.stdout.strip())
    assert (left / "upload-x" / "body").exists()

    spool = UploadSpool(base)
    try:
        assert not left.exists() and not Path(f"{left}.lock").exists()
        assert sorted(p.name for p in base.iterdir()) == sorted(
            [spool.path.name, spool.lock_path.name]
        )
    finally:
        spool.close()
    assert list(base.iterdir()) == []


def test_spool_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    first = UploadSpool(tmp_path)
    (first.path / "in-flight").write_bytes(b"still uploading")
    second = UploadSpool(tmp_path)  # a second worker starting next to the first
    try:
        assert (first.path / "in-flight").exists()
        assert first.path != second.path
    finally:
        second.close()
        first.close()


def test_orphan_folder_without_lock_is_swept(tmp_path: Path) -> None:
    (tmp_path / "spool-orphan").mkdir()
    UploadSpool(tmp_path).close()
    assert list(tmp_path.iterdir()) == []


def test_spool_base_must_belong_to_us(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "modelward-serve-link"
    link.symlink_to(target)
    with pytest.raises(RuntimeError, match="not a folder owned by this user"):
        UploadSpool(link)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    UploadSpool(shared).close()
    assert shared.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("model.pt", "model.pt"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\model.pkl", "model.pkl"),
        ("evil\x00.pkl", "evil.pkl"),
        ("line\nbreak\r\t.pkl", "linebreak.pkl"),
        ("\u202eexe.pkl", "exe.pkl"),  # right-to-left override is a format character
        ("<script>.pkl", "<script>.pkl"),  # shown escaped by the renderers, not mangled here
        ("", "upload"),
        (None, "upload"),
        ("..", "upload"),
        ("dir/", "upload"),
        ("x" * 500, "x" * 200),
    ],
)
def test_display_filename(raw: str | None, shown: str) -> None:
    assert display_filename(raw) == shown
