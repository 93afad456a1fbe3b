"""The store through the real commands: scan, history, and verdicts from verify/lock/gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixtures.gate_projects import make_project
from fixtures.integrity import make_model, sha256_hex, write_ec_key
from fixtures.pickles import call_system_p4
from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, main
from modelward.integrity import sign
from modelward.store import open_store, sha256_file


@pytest.fixture
def malicious(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(call_system_p4("id"))
    return path


def history(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["history", "--format", "json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else {}


def test_scan_stores_reuses_rescans_and_history_shows_it(
    store_url: str, malicious: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in ([], [], ["--rescan"], ["--no-store"]):
        store_args = [] if extra == ["--no-store"] else ["--store", store_url]
        assert main(["scan", "-f", "json", *store_args, *extra, str(malicious)]) == EXIT_FINDINGS
        report = json.loads(capsys.readouterr().out)
        assert report["results"][0]["findings"][0]["rule_id"] == "MW-PICKLE-DANGEROUS-GLOBAL"

    code, doc = history(capsys, "--store", store_url, str(malicious))
    assert code == EXIT_CLEAN
    assert doc["sha256"] == sha256_file(malicious)
    # Newest first: the --rescan, the reuse, the first scan; --no-store left nothing.
    assert [s["cached"] for s in doc["scans"]] == [False, True, False]
    assert {s["result"]["max_severity"] for s in doc["scans"]} == {"critical"}

    by_digest = history(capsys, "--store", store_url, doc["sha256"])[1]
    assert [s["id"] for s in by_digest["scans"]] == [s["id"] for s in doc["scans"]]

    assert main(["history", "--store", store_url, str(malicious)]) == EXIT_CLEAN
    table = capsys.readouterr().out
    assert "MW-PICKLE-DANGEROUS-GLOBAL" in table
    assert "cached" in table and "critical" in table


def test_scan_uses_the_default_store_and_parallel_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for i in range(3):
        (folder / f"m{i}.pkl").write_bytes(call_system_p4(f"echo {i}"))
    for _ in range(2):
        assert main(["scan", "-j", "2", "-f", "json", str(folder)]) == EXIT_FINDINGS
    capsys.readouterr()
    with open_store() as store:  # $MODELWARD_STORE, set per test by conftest
        for i in range(3):
            events = store.scans_for_path(str(folder / f"m{i}.pkl"))
            assert [e.cached for e in events] == [True, False]
            assert events[0].result.path == str(folder / f"m{i}.pkl")


def test_history_of_unknown_file_or_folder_is_exit_2(
    tmp_path: Path, malicious: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", str(malicious)]) == EXIT_ERROR
    assert "has nothing for" in capsys.readouterr().err
    assert main(["history", "0" * 64]) == EXIT_ERROR
    assert main(["history", str(tmp_path)]) == EXIT_ERROR
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["scan", "{file}"],
        ["history", "{file}"],
        ["verify", "{file}", "--key", "{file}"],
        ["gate", "{file}"],
    ],
)
def test_bad_store_url_is_exit_2_without_password(
    command: list[str], malicious: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://scanner:hunter2@127.0.0.1:1/none"
    args = [a.replace("{file}", str(malicious)) for a in command]
    assert main([*args, "--store", url]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "cannot open store postgresql://scanner:***@127.0.0.1:1/none" in err
    assert "hunter2" not in err
    assert "Traceback" not in err


def test_verify_records_signature_verdicts_per_file(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "model")
    key, pub = write_ec_key(tmp_path / "key.pem")
    sign(model, key, cache=False)
    weights = model / "model.safetensors"
    digest = sha256_file(weights)
    verify = ["verify", str(model), "--key", str(pub), "--store", store_url]

    assert main(verify) == EXIT_CLEAN
    weights.write_bytes(weights.read_bytes()[::-1])  # same size, other bytes
    assert main(verify) == EXIT_FINDINGS
    assert main([*verify[:-2], "--no-store"]) == EXIT_FINDINGS
    capsys.readouterr()

    with open_store(store_url) as store:
        [passed] = store.verdicts_for_digest(digest)
        assert (passed.kind, passed.passed, passed.path) == ("signature", True, str(weights))
        [tampered] = store.verdicts_for_digest(sha256_file(weights))
        assert not tampered.passed
        assert tampered.detail == "digest differs from the signed manifest"
        # Untouched files of a model that failed fail too, with the model's reason.
        config = store.verdicts_for_digest(sha256_hex(b'{"hidden_size": 8}\n'))
        assert [v.passed for v in config] == [False, True]
        assert config[0].detail.startswith("differs from the manifest signed by")
        # The bundle is not one of the model's files.
        assert not store.verdicts_for_digest(sha256_file(model / "model.sig"))

    code, doc = history(capsys, "--store", store_url, str(weights))
    assert code == EXIT_CLEAN
    assert doc["scans"] == []
    # By its bytes now and by its path: the failed check of these bytes, the pass of the old.
    assert [(v["kind"], v["passed"]) for v in doc["verdicts"]] == [
        ("signature", False),
        ("signature", True),
    ]


def test_lock_check_records_lock_verdicts(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path / "model")
    lock_file = tmp_path / "models.lock"
    assert main(["lock", str(model), "--lock-file", str(lock_file), "--store", store_url]) == 0
    check = ["lock", "--check", "--lock-file", str(lock_file), "--store", store_url]
    assert main(check) == EXIT_CLEAN
    vocab = model / "tokenizer" / "vocab.txt"
    vocab.write_bytes(b"x\ny\nz\n")
    assert main(check) == EXIT_FINDINGS
    capsys.readouterr()

    with open_store(store_url) as store:
        [ok] = store.verdicts_for_digest(sha256_hex(b"a\nb\nc\n"))
        assert (ok.kind, ok.passed, ok.path) == ("lock", True, str(vocab))
        [drifted] = store.verdicts_for_digest(sha256_file(vocab))
        assert (drifted.passed, drifted.detail) == (False, "digest differs from the lock")
        # `lock` without --check writes the lock file only.
        assert len(store.verdicts_for_path(str(model / "config.json"))) == 2


def test_gate_records_gate_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path)
    monkeypatch.chdir(project.root)
    assert main(["gate", str(project.model), "--config", str(project.config)]) == EXIT_CLEAN
    capsys.readouterr()
    weights = project.model / "model.safetensors"
    with open_store() as store:
        [verdict] = store.verdicts_for_digest(sha256_file(weights))
    assert (verdict.kind, verdict.passed) == ("gate", True)
    assert verdict.detail.startswith("PASS ")


def test_history_table_prints_hostile_names_inert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # a short relative path: the table does not fold it
    hostile = "[bold]evil\x1b[2J.pkl"
    Path(hostile).write_bytes(call_system_p4())
    assert main(["scan", "-f", "json", hostile]) == EXIT_FINDINGS
    capsys.readouterr()
    assert main(["history", hostile]) == EXIT_CLEAN
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "[bold]evil\\x1b[2J.pkl" in out


def test_an_unusable_default_store_is_a_warning_not_an_error(
    tmp_path: Path,
    malicious: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.delenv("MODELWARD_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))  # the default store cannot be created
    assert main(["scan", str(malicious)]) == EXIT_FINDINGS
    assert "going on without the results store" in capsys.readouterr().err
    # Named explicitly, the same store is an error.
    monkeypatch.setenv("MODELWARD_STORE", f"sqlite:///{blocker}/modelward/results.db")
    assert main(["scan", str(malicious)]) == EXIT_ERROR
