"""`modelward scan s3://...`: objects read by range through s3fs, against moto's S3 server.

The server is moto's own (`ThreadedMotoServer`) on 127.0.0.1; s3fs finds it through
`AWS_ENDPOINT_URL`, as it would a MinIO or any other S3-compatible store. There is no local fake
of Google Cloud Storage on PyPI that gcsfs works against without extra services, so `gs://` is
tested only for its missing-extra error.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from fixtures.pickles import call_system_p4  # noqa: E402
from modelward.cli.main import EXIT_ERROR, EXIT_FINDINGS, main  # noqa: E402
from modelward.remote import objects  # noqa: E402
from modelward.remote.http import HttpSettings, RemoteError  # noqa: E402

BUCKET = "models"
KEY_ID = "AKIAMODELWARDTEST0001"
SECRET = "modelward-test-secret-Zx81qPw0"

Finding = tuple[str, str, str, tuple[str, ...], int | None]


def write_model_files(folder: Path) -> dict[str, Path]:
    """A clean torch checkpoint of 4 MB, a malicious pickle and a safetensors file."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    folder.mkdir()
    files = {
        "checkpoints/model.pt": folder / "checkpoints" / "model.pt",
        "evil.pkl": folder / "evil.pkl",
        "weights.safetensors": folder / "weights.safetensors",
    }
    files["checkpoints/model.pt"].parent.mkdir()
    generator = torch.Generator().manual_seed(0)
    state = {
        "fc.weight": torch.randn(1000, 1000, generator=generator),
        "fc.bias": torch.zeros(1000),
    }
    torch.save(state, files["checkpoints/model.pt"])
    files["evil.pkl"].write_bytes(call_system_p4("true"))
    save_file({"w": np.arange(64, dtype=np.float32)}, str(files["weights.safetensors"]))
    return files


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """moto's S3 server on loopback holding the model files in `BUCKET`; (endpoint, local copy)."""
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    local = tmp_path_factory.mktemp("objects") / "repo"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    for key, path in write_model_files(local).items():
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        client.put_object(Bucket=BUCKET, Key=f"copy/{key}", Body=path.read_bytes())
    try:
        yield endpoint, local
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(s3: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and the endpoint, and nothing from the user's own AWS config."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3[0])


class CountingClient(objects.ObjectClient):
    """`ObjectClient` keeping each instance, so a test can read its counters after a scan."""

    made: ClassVar[list[CountingClient]] = []

    def __init__(self, fs: Any, settings: HttpSettings) -> None:
        super().__init__(fs, settings)
        self.by_object: dict[str, int] = {}
        CountingClient.made.append(self)

    def read(self, url: str, start: int, length: int, total: int, shown: str) -> bytes:
        data = super().read(url, start, length, total, shown)
        self.by_object[url] = self.by_object.get(url, 0) + len(data)
        return data


def findings(report: dict[str, Any], root: str) -> set[Finding]:
    found: set[Finding] = set()
    for result in report["results"]:
        for finding in result["findings"]:
            location = finding["location"]
            path = location["path"]
            assert path.startswith(root), path
            found.add(
                (
                    finding["rule_id"],
                    finding["severity"],
                    path[len(root) :].lstrip("/"),
                    tuple(location["members"]),
                    location["offset"],
                )
            )
    return found


def scan_json(capsys: pytest.CaptureFixture[str], *targets: str) -> tuple[int, dict[str, Any], str]:
    code = main(["scan", "--no-store", "-f", "json", *targets])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, out + err


def test_a_bucket_scan_finds_exactly_what_the_local_scan_finds_reading_little(
    s3: tuple[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, local = s3
    code, report, _ = scan_json(capsys, str(local))
    assert code == EXIT_FINDINGS
    expected = findings(report, str(local))
    assert any(f[2] == "evil.pkl" and f[1] == "critical" for f in expected)

    monkeypatch.setattr(objects, "ObjectClient", CountingClient)
    CountingClient.made.clear()
    code, report, text = scan_json(capsys, f"s3://{BUCKET}/")
    assert code == EXIT_FINDINGS
    copies = {(rule, sev, f"copy/{path}", members, at) for rule, sev, path, members, at in expected}
    assert findings(report, f"s3://{BUCKET}") == expected | copies
    assert {r["path"] for r in report["results"]} >= {
        f"s3://{BUCKET}/{prefix}{name}"
        for prefix in ("", "copy/")
        for name in ("checkpoints/model.pt", "evil.pkl", "weights.safetensors")
    }
    assert not [e for r in report["results"] for e in r["errors"]]
    (client,) = CountingClient.made
    checkpoint = (local / "checkpoints" / "model.pt").stat().st_size
    assert checkpoint > 4_000_000
    read = client.by_object[f"{BUCKET}/checkpoints/model.pt"]
    assert 0 < read < checkpoint // 20  # the pickle and the zip directory, not the tensors
    total = sum(p.stat().st_size for p in local.rglob("*") if p.is_file())
    assert client.bytes_received < 2 * total // 20
    assert SECRET not in text and KEY_ID not in text


def test_a_prefix_and_a_single_object(
    s3: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, local = s3
    code, report, _ = scan_json(capsys, str(local))
    expected = findings(report, str(local))

    code, report, _ = scan_json(capsys, f"s3://{BUCKET}/copy")  # no slash: still a prefix
    assert code == EXIT_FINDINGS
    assert findings(report, f"s3://{BUCKET}/copy") == expected

    code, report, _ = scan_json(capsys, f"s3://{BUCKET}/evil.pkl")
    assert code == EXIT_FINDINGS
    assert [r["path"] for r in report["results"]] == [f"s3://{BUCKET}/evil.pkl"]
    assert findings(report, f"s3://{BUCKET}/") == {f for f in expected if f[2] == "evil.pkl"}


def test_a_missing_bucket_or_prefix_is_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for target in ("s3://no-such-bucket/", "s3://no-such-bucket", "s3://no-such-bucket/a/b.pt"):
        code, _, text = scan_json(capsys, target)
        assert code == EXIT_ERROR
        assert "s3://no-such-bucket" in text and "no such bucket" in text
    code, _, text = scan_json(capsys, f"s3://{BUCKET}/nothing/here/")
    assert code == EXIT_ERROR
    assert f"modelward: s3://{BUCKET}/nothing/here/: no objects under this prefix" in text
    assert SECRET not in text and KEY_ID not in text


def test_a_wrong_secret_is_an_error_that_does_not_show_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET + "-wrong")
    # moto accepts any credentials unless IAM is on; whatever it answers, no secret is shown.
    code, _, text = scan_json(capsys, f"s3://{BUCKET}/evil.pkl")
    assert code in (EXIT_FINDINGS, EXIT_ERROR)
    assert SECRET not in text


def test_a_listing_is_bounded() -> None:
    with pytest.raises(RemoteError, match="more than 2 objects"):
        objects.resolve_objects(f"s3://{BUCKET}/", HttpSettings(), max_objects=2)


class LyingFs:
    """A file system returning `extra` more bytes than asked (negative: fewer)."""

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def cat_file(self, path: str, start: int, end: int) -> bytes:
        return b"x" * (end - start + self.extra)


@pytest.mark.parametrize(
    ("extra", "message"), [(5, "more than the 10 bytes"), (-3, "sent 7 of the 10 bytes")]
)
def test_a_body_of_the_wrong_length_is_an_error(extra: int, message: str) -> None:
    client = objects.ObjectClient(LyingFs(extra), HttpSettings())
    with pytest.raises(RemoteError, match=message):
        client.read("b/k", 100, 10, 1000, "s3://b/k")
    assert client.failures and client.requests == 1
    assert objects.ObjectClient(LyingFs(0), HttpSettings()).read("b/k", 995, 10, 1000, "s") == (
        b"x" * 5  # at the object's end, fewer bytes are all there is
    )


@pytest.mark.parametrize(
    ("scheme", "module", "extra"), [("s3", "s3fs", "s3"), ("gs", "gcsfs", "gcs")]
)
def test_a_missing_extra_names_the_install_command(
    scheme: str,
    module: str,
    extra: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    code, _, text = scan_json(capsys, f"{scheme}://bucket/model.pt")
    assert code == EXIT_ERROR
    assert f"pip install 'modelward[{extra}]'" in text


def test_a_stalled_server_is_an_error_within_the_timeout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import time

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        code = main(["scan", "--no-store", "--http-timeout", "1", "--http-retries", "1", "s3://b/"])
        elapsed = time.monotonic() - start
    assert code == EXIT_ERROR
    assert "timeout" in capsys.readouterr().err.lower()
    assert elapsed < 10
