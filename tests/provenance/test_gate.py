"""`modelward gate`: one verdict from scan, lock, signature and policy; each failure alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

import modelward
from fixtures.gate_projects import STRICT_POLICY, Project, make_hf_snapshot, make_project
from fixtures.integrity import write_ec_key
from fixtures.pickles import call_system_p4, global_, proto
from modelward.cli.main import main
from modelward.provenance.gate import GateResult, gate
from modelward.provenance.lock import lock_model, write_lock

SARIF_SCHEMA = Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json"
EVERY_CHECK = ["scan", "lock", "signature", "sources", "weights"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "proj")


def rule_ids(result: GateResult) -> list[str]:
    return sorted(r.rule_id for r in result.reasons)


def test_clean_locked_signed_safetensors_passes(project: Project) -> None:
    result = gate(project.model, project.config)
    assert result.passed, [str(r.to_dict()) for r in result.reasons]
    assert result.checks == EVERY_CHECK
    assert result.summary().startswith("PASS ")
    assert [r.format for r in result.scan.results if r.path.endswith(".safetensors")] == [
        "safetensors"
    ]


def test_drifted_lock_is_the_only_reason(project: Project) -> None:
    weights = project.model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # a tensor byte: still a valid file, but not the locked one
    weights.write_bytes(bytes(data))
    project.resign()  # the signer re-signed it; the lock still pins the old bytes
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-LOCK-DRIFT"]
    assert "changed: model.safetensors" in (result.reasons[0].evidence or "")


def test_missing_signature_when_required(project: Project) -> None:
    (project.model / "model.sig").unlink()
    project.relock()
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-UNSIGNED"]


def test_signature_by_an_untrusted_key(project: Project, tmp_path: Path) -> None:
    other, _ = write_ec_key(tmp_path / "other.pem")
    project.seal(other)
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-SIGNATURE-INVALID"]
    assert "release.pub.pem" in (result.reasons[0].evidence or "")


def test_signed_model_changed_after_signing(project: Project) -> None:
    (project.model / "config.json").write_text('{"model_type": "bert", "hidden_size": 5}\n')
    project.relock()
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-SIGNATURE-MISMATCH"]


def test_pickle_weights_when_safetensors_only(project: Project) -> None:
    torch.save({"w": torch.zeros(3)}, project.model / "pytorch_model.bin")
    project.seal()
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-PICKLE-FORBIDDEN"]
    assert result.reasons[0].location.path.endswith("pytorch_model.bin")


def test_malicious_pickle_is_a_scan_reason(tmp_path: Path) -> None:
    project = make_project(tmp_path, STRICT_POLICY.replace("safetensors_only = true", ""))
    (project.model / "extra.pkl").write_bytes(call_system_p4())
    project.seal()
    result = gate(project.model, project.config)
    assert set(rule_ids(result)) == {"MW-GATE-SCAN"}
    assert any("MW-PICKLE" in r.message for r in result.reasons)
    assert max(r.severity for r in result.reasons) == modelward.Severity.CRITICAL


def test_forbid_pickle_alone(tmp_path: Path) -> None:
    policy = STRICT_POLICY.replace("safetensors_only = true", "forbid_pickle = true")
    project = make_project(tmp_path, policy)
    torch.save({"w": torch.zeros(3)}, project.model / "pytorch_model.bin")
    project.seal()
    assert rule_ids(gate(project.model, project.config)) == ["MW-GATE-PICKLE-FORBIDDEN"]


def test_local_model_outside_allowed_paths(tmp_path: Path) -> None:
    project = make_project(tmp_path, STRICT_POLICY.replace('["models"]', '["vetted"]'))
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-SOURCE"]
    assert "outside the allowed paths" in result.reasons[0].message


def test_model_without_lock_entry(project: Project) -> None:
    write_lock(project.root / "models.lock", [])
    assert rule_ids(gate(project.model, project.config)) == ["MW-GATE-UNLOCKED"]


HUB_POLICY = """\
[policy]
require_lock = true
[policy.sources]
allowed_orgs = ["Trusted-Org"]
"""


@pytest.mark.parametrize(("org", "allowed"), [("trusted-org", True), ("evil-org", False)])
def test_hub_org_from_the_lock_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, org: str, allowed: bool
) -> None:
    hub = tmp_path / "hub"
    snapshot = make_hf_snapshot(hub, f"{org}/tiny")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    config = tmp_path / "modelward.toml"
    config.write_text(HUB_POLICY)
    entry = lock_model(f"{org}/tiny", base_dir=tmp_path, hf_cache=hub, cache=None)
    assert entry.source == f"{org}/tiny@{'b' * 40}"
    write_lock(tmp_path / "models.lock", [entry])
    result = gate(snapshot, config)
    assert result.checks == ["scan", "lock", "sources"]
    if allowed:
        assert result.passed, [r.message for r in result.reasons]
    else:
        assert rule_ids(result) == ["MW-GATE-SOURCE"]
        assert f"hub model {org}/tiny has organisation '{org}'" in result.reasons[0].message


def test_hub_org_from_the_cache_path_without_a_lock(tmp_path: Path) -> None:
    snapshot = make_hf_snapshot(tmp_path / "hub", "evil-org/tiny")
    config = tmp_path / "modelward.toml"
    config.write_text('[policy.sources]\nallowed_orgs = ["trusted-org"]\n')
    result = gate(snapshot / "model.safetensors", config)
    assert rule_ids(result) == ["MW-GATE-SOURCE"]
    assert "evil-org" in result.reasons[0].message


def test_no_config_gates_on_the_scan_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(call_system_p4())
    result = modelward.gate("evil.pkl")
    assert result.checks == ["scan"]
    assert rule_ids(result) and set(rule_ids(result)) == {"MW-GATE-SCAN"}


def test_discovers_modelward_toml_in_the_current_folder(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.root)
    (project.model / "model.sig").unlink()
    project.relock()
    assert rule_ids(modelward.gate("models/bert")) == ["MW-GATE-UNSIGNED"]


# -- CLI -----------------------------------------------------------------------------------


def test_cli_pass_prints_one_verdict_line(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gate", str(project.model), "--config", str(project.config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    verdicts = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert verdicts == [f"PASS {project.model}: {', '.join(EVERY_CHECK)} passed"]


def test_cli_fail_lists_every_reason(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    (project.model / "model.sig").unlink()
    torch.save({"w": torch.zeros(2)}, project.model / "pytorch_model.bin")
    code = main(["gate", str(project.model), "--config", str(project.config)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out.splitlines()[-1]
    for rule in ("MW-GATE-UNSIGNED", "MW-GATE-LOCK-DRIFT", "MW-GATE-PICKLE-FORBIDDEN"):
        assert rule in out


def test_cli_explicit_signature_path(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    moved = project.root / "release.sig"
    (project.model / "model.sig").rename(moved)
    project.relock()
    args = ["gate", str(project.model), "--config", str(project.config)]
    assert main([*args, "--signature", str(moved)]) == 0
    assert main(args) == 1
    assert "MW-GATE-UNSIGNED" in capsys.readouterr().out


def sarif_errors(log: Any) -> list[str]:
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


def test_cli_sarif_is_valid_and_lists_reasons(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.model / "model.sig").unlink()
    project.relock()
    out = tmp_path / "gate.sarif"
    code = main(
        ["gate", str(project.model), "--config", str(project.config), "-f", "sarif", "-o", str(out)]
    )
    assert code == 1
    log = json.loads(out.read_text())
    assert sarif_errors(log) == []
    [run] = log["runs"]
    assert [r["ruleId"] for r in run["results"]] == ["MW-GATE-UNSIGNED"]
    assert capsys.readouterr().err.startswith("FAIL ")


def test_cli_json_pass(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", str(project.model), "--config", str(project.config), "-f", "json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["results"][0]["format"] == "gate"
    assert doc["results"][0]["findings"] == []
    assert doc["gate"] == {"verdict": "pass", "checks": EVERY_CHECK}
    assert captured.err.startswith("PASS ")


@pytest.mark.parametrize(
    "setup",
    ["bad-config", "missing-path", "missing-key"],
)
def test_cli_usage_errors_exit_2(
    project: Project, capsys: pytest.CaptureFixture[str], setup: str
) -> None:
    path = project.model
    if setup == "bad-config":
        project.config.write_text(STRICT_POLICY + "\n[policy.extra]\nx = 1\n")
    elif setup == "missing-path":
        path = project.root / "nope"
    else:
        (project.root / "keys" / "release.pub.pem").unlink()
    assert main(["gate", str(path), "--config", str(project.config)]) == 2
    assert capsys.readouterr().err.startswith("modelward: ")


def test_checks_with_nothing_to_look_at_are_not_listed(tmp_path: Path) -> None:
    project = make_project(tmp_path, "[policy]\nlock_file = 'other.lock'\n")
    result = gate(project.model, project.config)  # a bundle, but no trusted keys; no lock
    assert result.passed
    assert result.checks == ["scan"]


def test_a_bundle_is_verified_when_keys_are_trusted_but_not_required(tmp_path: Path) -> None:
    policy = '[policy.signatures]\ntrusted_keys = ["keys/release.pub.pem"]\n'
    project = make_project(tmp_path, policy)
    assert gate(project.model, project.config).checks == ["scan", "signature"]
    other, _ = write_ec_key(tmp_path / "other.pem")
    project.resign(other)
    assert rule_ids(gate(project.model, project.config)) == ["MW-GATE-SIGNATURE-INVALID"]
    (project.model / "model.sig").unlink()
    result = gate(project.model, project.config)
    assert result.passed and result.checks == ["scan"]


def test_malformed_lock_file(project: Project) -> None:
    (project.root / "models.lock").write_text("version = 99\n")
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-LOCK-INVALID"]
    assert "unsupported lock version" in result.reasons[0].message


def test_scan_allow_globals_from_the_same_file_reach_the_gate(tmp_path: Path) -> None:
    project = make_project(tmp_path, "[policy]\nfail_on = 'high'\n")
    # A pickle calling the user's own class: unknown to modelward, high until allow-listed.
    (project.model / "block.pkl").write_bytes(proto(2) + global_("mypkg.layers", "Block") + b")R.")
    result = gate(project.model, project.config)
    assert rule_ids(result) == ["MW-GATE-SCAN"]
    project.config.write_text(
        "[scan]\nallow_globals = ['mypkg.layers.Block']\n[policy]\nfail_on = 'high'\n"
    )
    assert gate(project.model, project.config).passed
