"""`modelward scan --ray`: files scanned as Ray tasks land in the store, source "ray"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.pickles import call_system_p4
from modelward.cli.main import EXIT_ERROR, EXIT_FINDINGS, main
from modelward.store import open_store


def test_scan_on_a_local_ray_records_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray")
    folder = tmp_path / "models"
    folder.mkdir()
    for i in range(3):
        (folder / f"m{i}.pkl").write_bytes(call_system_p4(f"echo {i}"))
    # The paths first: `--ray` alone then starts (and stops) a local Ray with -j CPUs.
    assert main(["scan", str(folder), "-f", "json", "-j", "2", "--ray"]) == EXIT_FINDINGS
    report = json.loads(capsys.readouterr().out)
    assert [r["max_severity"] for r in report["results"]] == ["critical"] * 3
    with open_store() as store:
        for i in range(3):
            [event] = store.scans_for_path(str(folder / f"m{i}.pkl"))
            assert (event.source, event.cached) == ("ray", False)


def test_ray_address_errors_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.pkl"
    model.write_bytes(call_system_p4())
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "--ray", str(tmp_path)])
    assert exit_info.value.code == EXIT_ERROR
    assert "is not a Ray address" in capsys.readouterr().err
    pytest.importorskip("ray")
    assert main(["scan", str(model), "--ray", "127.0.0.1:1"]) == EXIT_ERROR
    assert "cannot connect to Ray at 127.0.0.1:1" in capsys.readouterr().err
