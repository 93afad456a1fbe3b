"""`verify` reads the model once, also when the results store records each file's SHA-256.

Reads are counted twice over: by the hasher's own byte counter, and by the kernel's count
of bytes this process read (`rchar` in /proc/self/io, Linux), which also sees any read
that bypasses the hasher. Neither is a timing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fixtures.integrity import make_model, sha256_hex, write_ec_key
from modelward.cli.main import EXIT_CLEAN, EXIT_FINDINGS, main
from modelward.integrity import DigestCache, IntegrityError, sign, verify
from modelward.integrity.hashing import CHUNK_SIZE, HashTask, bytes_read, hash_tasks
from modelward.integrity.manifest import shard_ranges
from modelward.integrity.walk import FileEntry
from modelward.store import open_store

PROC_IO = Path("/proc/self/io")


def rchar() -> int | None:
    """Bytes this process has read through read(2) and friends, or None off Linux."""
    if not PROC_IO.exists():
        return None
    for line in PROC_IO.read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return None


def model_with_weights(root: Path) -> tuple[Path, int]:
    """A model folder of about 6 MB (and its size, `.git` left out, as hashing does):
    1 MB shards of it straddle the hasher's 1 MiB chunks."""
    files = {
        "config.json": b'{"hidden_size": 8}\n',
        "model.safetensors": os.urandom(5 * CHUNK_SIZE + 12_345),
        "tokenizer/vocab.txt": b"a\nb\nc\n",
        "empty.txt": b"",
    }
    return make_model(root, files), sum(len(data) for data in files.values())


@pytest.mark.parametrize(
    "hashing",
    [[], ["--method", "shards", "--shard-size", "1000000"], ["--algorithm", "blake2b"]],
    ids=["files-sha256", "shards", "blake2b"],
)
def test_verify_with_store_reads_the_model_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hashing: list[str]
) -> None:
    model, size = model_with_weights(tmp_path / "model")
    key, pub = write_ec_key(tmp_path / "key.pem")
    assert main(["sign", str(model), "--key", str(key), "--no-cache", *hashing]) == EXIT_CLEAN
    verify_cli = ["verify", str(model), "--key", str(pub), "--no-cache"]  # store on (default)
    assert main(verify_cli) == EXIT_CLEAN  # warms imports and the store file

    before, kernel_before = bytes_read(), rchar()
    assert main(verify_cli) == EXIT_CLEAN
    assert bytes_read() - before == size
    kernel_after = rchar()
    if kernel_before is not None and kernel_after is not None:
        # The model once, plus the bundle and the store's pages: far below a second read.
        assert size <= kernel_after - kernel_before < size + size // 2
    capsys.readouterr()

    with open_store() as store:
        for name in ("model.safetensors", "config.json", "tokenizer/vocab.txt", "empty.txt"):
            digest = sha256_hex((model / name).read_bytes())
            verdicts = store.verdicts_for_digest(digest)
            assert [(v.kind, v.passed, v.path) for v in verdicts] == [
                ("signature", True, str(model / name))
            ] * 2


def test_changed_file_is_recorded_by_its_new_digest_without_a_second_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, size = model_with_weights(tmp_path / "model")
    key, pub = write_ec_key(tmp_path / "key.pem")
    sign(model, key, method="shards", shard_size=1_000_000, cache=False)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[::-1])  # same size, other bytes
    before = bytes_read()
    assert main(["verify", str(model), "--key", str(pub), "--no-cache"]) == EXIT_FINDINGS
    assert bytes_read() - before == size
    capsys.readouterr()
    with open_store() as store:
        [tampered] = store.verdicts_for_digest(sha256_hex(weights.read_bytes()))
    assert (tampered.passed, tampered.detail) == (False, "digest differs from the signed manifest")


@pytest.mark.parametrize("jobs", [None, 1], ids=["pipelined", "one-thread"])
@pytest.mark.parametrize("algorithm", ["sha256", "blake2b"])
def test_hash_tasks_gives_shards_and_whole_file_sha256_in_one_read(
    tmp_path: Path, algorithm: str, jobs: int | None
) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 777)
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    entry = FileEntry.from_stat("w.bin", str(path), path.stat())
    ranges = shard_ranges(len(data), 700_000)  # shard edges fall inside chunks
    tasks = [HashTask(entry, start, end) for start, end in ranges]

    before = bytes_read()
    hashed = hash_tasks(tasks, algorithm, jobs=jobs, whole_sha256=True)
    assert bytes_read() - before == len(data)
    assert hashed.digests == [hashlib.new(algorithm, data[s:e]).digest() for s, e in ranges]
    assert hashed.sha256 == {"w.bin": hashlib.sha256(data).digest()}

    # Without the whole-file SHA-256, each shard is its own parallel task: no extra digest.
    assert hash_tasks(tasks, algorithm).digests == hashed.digests
    assert hash_tasks(tasks, algorithm).sha256 == {}


def test_cached_reverify_with_whole_sha256_reads_nothing(tmp_path: Path) -> None:
    model, _ = model_with_weights(tmp_path / "model")
    key, pub = write_ec_key(tmp_path / "key.pem")
    sign(model, key, method="shards", shard_size=1_000_000, cache=False)
    with DigestCache(tmp_path / "digests.sqlite", racy_window_ns=0) as cache:
        first = verify(model, key=pub, cache=cache, whole_sha256=True)
        before = bytes_read()
        again = verify(model, key=pub, cache=cache, whole_sha256=True)
        assert bytes_read() == before
    assert first.ok and again.ok
    assert again.file_sha256 == first.file_sha256
    assert first.file_sha256["model.safetensors"].hex() == sha256_hex(
        (model / "model.safetensors").read_bytes()
    )


@pytest.mark.parametrize("jobs", [None, 1])
@pytest.mark.parametrize("whole", [False, True])
def test_file_that_shrank_while_hashed_is_an_error(
    tmp_path: Path, whole: bool, jobs: int | None
) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(os.urandom(2 * CHUNK_SIZE))
    st = path.stat()
    listed = FileEntry("w.bin", str(path), st.st_size + CHUNK_SIZE, st.st_dev, st.st_ino, 0, 0)
    tasks = [HashTask(listed, s, e) for s, e in shard_ranges(listed.size, CHUNK_SIZE)]
    with pytest.raises(IntegrityError, match="shrank"):
        hash_tasks(tasks, "sha256", jobs=jobs, whole_sha256=whole)
