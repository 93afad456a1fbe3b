"""`modelward scan hf://...` and `https://...`: range reads give the local scan's findings.

Servers are the loopback fixtures of `tests/fixtures/http_servers.py`: a Hub-compatible endpoint
(API, resolve URLs, LFS redirects to a CDN path) and a plain static server with Range support.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fixtures.http_servers import HubRepo, HubServer, RangeServer
from fixtures.pickles import call_system_p4
from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, main
from modelward.config import ScanConfig
from modelward.remote import HttpSettings, RemoteError, scan_remote

#: Short timeouts and no back-off, so the hostile-server tests end quickly.
QUICK = HttpSettings(connect_timeout=2, read_timeout=1, retries=1, backoff=0)
TOKEN = "hf_secret_token_for_tests_0123456789"


def torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("true",))


@pytest.fixture(scope="module")
def repo_files() -> dict[str, bytes]:
    """A model folder: config, custom code named by auto_map, a big clean checkpoint, a
    poisoned checkpoint, a raw pickle and a safetensors file."""
    from safetensors.numpy import save

    big = torch_bytes({"w": torch.zeros(1024, 1024)})  # 4 MiB: read by range
    return {
        "config.json": json.dumps(
            {"model_type": "custom", "auto_map": {"AutoModel": "modeling.Model"}}
        ).encode(),
        "modeling.py": b"import os\nos.system('true')\nclass Model: pass\n",
        "pytorch_model.bin": big,
        "sub/evil.pt": torch_bytes({"w": torch.zeros(512, 1024), "x": Payload()}),
        "raw.pkl": call_system_p4(),
        "model.safetensors": save({"w": np.zeros((256, 256), np.float32)}),
    }


@pytest.fixture
def local_copy(tmp_path: Path, repo_files: dict[str, bytes]) -> Path:
    root = tmp_path / "local" / "repo"
    for name, data in repo_files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def findings_by_file(report: dict[str, Any], root: str) -> set[tuple[str, ...]]:
    """(relative path, rule, severity, members, offset) of every finding, wherever scanned."""
    out = set()
    for result in report["results"]:
        for f in result["findings"]:
            path = f["location"]["path"]
            relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
            out.add(
                (
                    relative,
                    f["rule_id"],
                    f["severity"],
                    "!".join(f["location"]["members"]),
                    str(f["location"]["offset"]),
                )
            )
    return out


def scan_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["scan", "--no-store", "-f", "json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_hub_scan_matches_the_local_scan(
    repo_files: dict[str, bytes], local_copy: Path, capsys, monkeypatch
) -> None:
    with HubServer([HubRepo("org/model", repo_files)]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code, remote, _ = scan_json(capsys, "hf://org/model")
        commit = hub.repos[("model", "org/model")].commit
        sent = hub.bytes_sent
    local_code, local, _ = scan_json(capsys, str(local_copy))
    assert code == local_code == EXIT_FINDINGS
    root = f"hf://org/model@{commit}"
    assert findings_by_file(remote, root) == findings_by_file(local, str(local_copy))
    assert any(
        f[1] == "MW-PICKLE-DANGEROUS-GLOBAL" and f[0] == "sub/evil.pt"
        for f in findings_by_file(remote, root)
    )
    # The folder checks ran on the staged copy and are reported at the repository.
    assert any(r["format"] == "hf-model-folder" and r["path"] == root for r in remote["results"])
    # Range reads: far less than the repository's bytes crossed the wire.
    assert sent < 0.25 * sum(len(d) for d in repo_files.values())


def test_revision_path_and_commit_are_in_the_report(
    repo_files: dict[str, bytes], capsys, monkeypatch
) -> None:
    repo = HubRepo("org/model", repo_files, revisions={"main": "a" * 40, "v1": "b" * 40})
    with HubServer([repo]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code, report, _ = scan_json(capsys, "hf://org/model@v1/sub")
    assert code == EXIT_FINDINGS
    assert [r["path"] for r in report["results"]] == [f"hf://org/model@{'b' * 40}/sub/evil.pt"]


def test_token_is_sent_and_never_shown(repo_files: dict[str, bytes], capsys, monkeypatch) -> None:
    with HubServer([HubRepo("org/private", repo_files)], token=TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
        denied = main(["scan", "--no-store", "hf://org/private"])
        assert denied == EXIT_ERROR
        capsys.readouterr()
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        for form in ("json", "table", "sarif"):
            code = main(["scan", "--no-store", "-f", form, "hf://org/private"])
            captured = capsys.readouterr()
            assert code == EXIT_FINDINGS
            assert TOKEN not in captured.out + captured.err


def test_missing_repository_is_an_error(capsys, monkeypatch) -> None:
    with HubServer([]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["scan", "--no-store", "hf://org/none"]) == EXIT_ERROR
    assert "hf://org/none" in capsys.readouterr().err


def test_lfs_digest_is_the_store_key(repo_files: dict[str, bytes], monkeypatch, tmp_path) -> None:
    """A second scan of an unchanged repository reuses every stored result; only the listing
    and the small files are fetched again."""
    from modelward.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    try:
        with HubServer([HubRepo("org/model", repo_files)]) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            first = scan_remote("hf://org/model", ScanConfig(), store=store)
            hub.reset_counters()
            second = scan_remote("hf://org/model", ScanConfig(), store=store)
            again = hub.bytes_sent
        assert [r.findings for r in first] == [r.findings for r in second]
        small = sum(len(d) for d in repo_files.values() if len(d) <= 1024 * 1024)
        assert again <= small + 64 * 1024  # listings and small files only
    finally:
        store.close()


def test_url_scan_matches_local_and_hides_credentials(
    repo_files: dict[str, bytes], local_copy: Path, capsys
) -> None:
    with RangeServer({"m/evil.pt": repo_files["sub/evil.pt"]}) as server:
        url = server.file_url("m/evil.pt").replace("http://", "http://user:hunter2@") + "?sig=abc"
        code, report, err = scan_json(capsys, url)
    local_code, local, _ = scan_json(capsys, str(local_copy / "sub" / "evil.pt"))
    assert code == local_code == EXIT_FINDINGS
    shown = report["results"][0]["path"]
    assert "hunter2" not in json.dumps(report) + err and "sig=abc" not in shown
    strip = {(f[1], f[2], f[3], f[4]) for f in findings_by_file(report, shown)}
    assert strip == {(f[1], f[2], f[3], f[4]) for f in findings_by_file(local, "")}


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("oversend", "more than"),
        ("lie-size", "size"),
        ("redirect-loop", "redirect"),
        ("stall", "attempts"),
        ("truncate", ""),
        ("ignore-range", "ignores Range"),
    ],
)
def test_hostile_server_is_an_error_never_a_hang(
    repo_files: dict[str, bytes], mode: str, message: str
) -> None:
    with RangeServer(
        {"big.pt": repo_files["pytorch_model.bin"]}, misbehave={mode}, stall_seconds=5
    ) as server:
        url = server.file_url("big.pt")
        try:
            results = scan_remote(url, ScanConfig(), settings=QUICK)
        except RemoteError as exc:  # the size probe itself failed
            assert message.lower() in str(exc).lower()
            return
    (result,) = results
    assert result.errors, f"{mode}: no error"
    assert message.lower() in " ".join(result.errors).lower()


def test_hostile_server_through_the_cli_exits_2(repo_files: dict[str, bytes], capsys) -> None:
    with RangeServer({"big.pt": repo_files["pytorch_model.bin"]}, misbehave={"oversend"}) as srv:
        code = main(["scan", "--no-store", "--http-retries", "0", srv.file_url("big.pt")])
    assert code == EXIT_ERROR
    assert "more than" in capsys.readouterr().err


def test_a_5xx_is_retried(repo_files: dict[str, bytes]) -> None:
    with RangeServer(
        {"clean.pt": repo_files["pytorch_model.bin"]}, misbehave={"status-500-once"}
    ) as server:
        (result,) = scan_remote(server.file_url("clean.pt"), ScanConfig(), settings=QUICK)
    assert not result.errors and not result.findings and result.format == "pytorch-zip"


def test_clean_remote_file_exits_clean(repo_files: dict[str, bytes]) -> None:
    with RangeServer({"w.safetensors": repo_files["model.safetensors"]}) as server:
        assert main(["scan", "--no-store", server.file_url("w.safetensors")]) == EXIT_CLEAN


def test_a_stalled_hub_api_is_an_error_within_the_timeout(monkeypatch) -> None:
    import time

    with HubServer([HubRepo("org/m", {"config.json": b"{}"})], misbehave={"api-stall"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        started = time.monotonic()
        with pytest.raises(RemoteError, match="listing failed"):
            scan_remote("hf://org/m", ScanConfig(), settings=QUICK)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(("kind", "prefix"), [("dataset", "datasets/"), ("space", "spaces/")])
def test_dataset_and_space_repositories(
    repo_files: dict[str, bytes], kind: str, prefix: str, capsys, monkeypatch
) -> None:
    repo = HubRepo("org/things", {"raw.pkl": repo_files["raw.pkl"]}, repo_type=kind)
    with HubServer([repo]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        code, report, _ = scan_json(capsys, f"hf://{prefix}org/things")
        assert main(["scan", "--no-store", "hf://org/things"]) == EXIT_ERROR  # not a model repo
    assert code == EXIT_FINDINGS
    (result,) = report["results"]
    assert result["path"] == f"hf://{prefix}org/things@{repo.commit}/raw.pkl"
    assert result["max_severity"] == "critical"


def test_a_listed_path_that_climbs_out_is_a_finding_and_never_written(
    repo_files: dict[str, bytes], tmp_path: Path, monkeypatch
) -> None:
    """The staging copy must not follow a hostile listing out of its folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    files = {"config.json": b"{}", "../../escaped.json": b"{}", "/abs.json": b"{}"}
    with HubServer([HubRepo("org/model", files)]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        results = scan_remote("hf://org/model", ScanConfig(), settings=QUICK)
    flagged = {
        r.path.rsplit("@", 1)[1].split("/", 1)[1]
        for r in results
        if any(f.rule_id == "MW-ARCHIVE-PATH-TRAVERSAL" for f in r.findings)
    }
    assert flagged == {"../../escaped.json", "/abs.json"}
    assert [p.name for p in tmp_path.rglob("*.json")] == []  # the staging copy is gone, and
    assert not (tmp_path / "escaped.json").exists()  # nothing landed outside it


def test_a_trickling_server_is_cut_off(repo_files: dict[str, bytes]) -> None:
    """Each read arrives inside the read timeout, but the whole request takes too long."""
    slow = HttpSettings(
        read_timeout=0.5, retries=0, block_size=512 * 1024, min_bytes_per_second=1e6
    )
    with RangeServer(  # 64 KiB chunks, one every 0.33 s: each inside the read timeout
        {"big.pt": repo_files["pytorch_model.bin"]}, throttle_bytes_per_s=200_000
    ) as server:
        (result,) = scan_remote(server.file_url("big.pt"), ScanConfig(), settings=slow)
    assert any("too slow" in error for error in result.errors)
