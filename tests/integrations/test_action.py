"""The composite GitHub Action (`action.yml`): its shape, and its shell steps run for real.

GitHub's runner is not here, so the test plays its part for the steps that are ours: it fills in
each step's `env:` (`${{ inputs.* }}` from the defaults or the test's values, `runner.temp`,
`github.action_path`), sets `GITHUB_OUTPUT` and runs the step's `run:` script with bash. The
modelward the script calls is either a recorder of its argument vector, which the test then
passes to `modelward.cli.main.main` in this process, or this environment's real `modelward`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from fixtures.pickles import call_system_p4
from modelward.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXPRESSION = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")
INPUTS = {
    "paths": ".",
    "command": "scan",
    "fail-on": "medium",
    "sarif-file": "modelward.sarif",
    "upload-sarif": "true",
    "category": "modelward",
    "python-version": "3.12",
    "modelward-spec": "",
    "extra-args": "",
}


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _steps(action: dict[str, Any]) -> list[dict[str, Any]]:
    steps = action["runs"]["steps"]
    assert isinstance(steps, list)
    return steps


def _step(action: dict[str, Any], *, id: str | None = None, name: str = "") -> dict[str, Any]:
    for step in _steps(action):
        if (id is not None and step.get("id") == id) or (name and step.get("name") == name):
            return step
    raise AssertionError(f"no step {id or name!r} in action.yml")


def test_action_is_composite_with_the_documented_interface(action: dict[str, Any]) -> None:
    assert action["runs"]["using"] == "composite"
    assert {name: spec.get("default") for name, spec in action["inputs"].items()} == INPUTS
    assert not any(spec.get("required") for spec in action["inputs"].values())
    assert set(action["outputs"]) == {"exit-code", "sarif-file"}
    for name, spec in action["outputs"].items():
        assert spec["value"] == f"${{{{ steps.scan.outputs.{name} }}}}"


def test_action_steps(action: dict[str, Any]) -> None:
    steps = _steps(action)
    uses = [step.get("uses", "") for step in steps]
    assert uses[0].startswith("actions/setup-python@")
    assert steps[0]["with"]["python-version"] == "${{ inputs.python-version }}"

    # Installs the spec the user gave, else the action's own checkout.
    install = _step(action, name="Install modelward")
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert '"${MODELWARD_SPEC:-$ACTION_PATH}"' in install["run"]

    # The upload runs whatever modelward's exit code was, unless the user turned it off.
    (upload,) = (step for step in steps if "upload-sarif" in step.get("uses", ""))
    assert upload["uses"] == "github/codeql-action/upload-sarif@v3"
    assert upload["if"].startswith("always()")
    assert "inputs.upload-sarif == 'true'" in upload["if"]
    assert upload["with"]["sarif_file"] == "${{ steps.scan.outputs.sarif-file }}"
    assert steps.index(upload) > steps.index(_step(action, id="scan"))

    # The job fails last, with modelward's own code.
    last = steps[-1]
    assert last["if"] == "always()"
    assert last["env"]["EXIT_CODE"] == "${{ steps.scan.outputs.exit-code }}"

    # Inputs reach shell scripts only through `env:`, never spliced into the script text.
    for step in steps:
        assert "${{" not in step.get("run", ""), step.get("name")
        if "run" in step:
            assert step["shell"] == "bash"


def _run_step(
    step: dict[str, Any],
    workspace: Path,
    runner_temp: Path,
    inputs: dict[str, str],
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run one `run:` step as the runner would; returns the process and its step outputs."""
    context = {f"inputs.{name}": value for name, value in {**INPUTS, **inputs}.items()}
    context |= {"runner.temp": str(runner_temp), "github.action_path": str(ROOT)}
    output_file = runner_temp / "github_output"
    output_file.write_text("")
    env = dict(os.environ, GITHUB_OUTPUT=str(output_file), **(extra_env or {}))
    for name, value in step.get("env", {}).items():
        env[name] = EXPRESSION.sub(lambda match: context[match.group(1)], str(value))
    script = runner_temp / "step.sh"
    script.write_text(step["run"])
    done = subprocess.run(
        # How the runner starts a `shell: bash` step.
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs = dict(
        line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line
    )
    return done, outputs


def _recorder(runner_temp: Path) -> Path:
    """A `modelward` that only writes down the arguments it was given."""
    record = runner_temp / "argv.json"
    shim = runner_temp / "modelward-venv" / "bin" / "modelward"
    shim.parent.mkdir(parents=True)
    shim.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    shim.chmod(0o755)
    return record


def _real_modelward(runner_temp: Path) -> None:
    """The venv the install step would make, standing in: this environment's modelward."""
    real = shutil.which("modelward", path=str(Path(sys.executable).parent))
    assert real is not None
    bin_dir = runner_temp / "modelward-venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "modelward").symlink_to(real)
    (bin_dir / "python").symlink_to(sys.executable)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A checked-out repository with one malicious pickle and one clean array."""
    models = tmp_path / "workspace" / "models"
    models.mkdir(parents=True)
    (models / "weights.pkl").write_bytes(call_system_p4("true"))
    (models / "notes.txt").write_text("clean\n")
    return models.parent


def _sarif(path: Path) -> dict[str, Any]:
    sarif = json.loads(path.read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0"
    assert sarif["runs"][0]["tool"]["driver"]["name"] == "modelward"
    return sarif


@pytest.mark.parametrize("command", ["scan", "gate"])
def test_the_command_line_the_action_builds_is_modelwards(
    action: dict[str, Any],
    workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    runner_temp = tmp_path / "runner-temp"
    record = _recorder(runner_temp)
    inputs = {"command": command, "paths": "models", "sarif-file": "reports/mw.sarif"}

    done, outputs = _run_step(_step(action, id="scan"), workspace, runner_temp, inputs)

    assert done.returncode == 0, done.stderr
    argv = json.loads(record.read_text())
    sarif_path = workspace / "reports" / "mw.sarif"
    assert outputs["sarif-file"] == str(sarif_path)
    assert sarif_path.parent.is_dir()  # created for modelward, which does not
    assert argv[0] == command
    assert argv[argv.index("--format") + 1] == "sarif"
    assert argv[argv.index("--output") + 1] == str(sarif_path)
    assert argv[-1] == "models"
    if command == "scan":
        assert argv[argv.index("--fail-on") + 1] == "medium"

    # The very argument vector, parsed and run by modelward's own CLI.
    monkeypatch.chdir(workspace)
    assert main(argv) == 1
    results = _sarif(sarif_path)["runs"][0]["results"]
    rule = "MW-PICKLE-DANGEROUS-GLOBAL" if command == "scan" else "MW-GATE-SCAN"
    assert rule in {result["ruleId"] for result in results}


def test_extra_args_and_several_paths(
    action: dict[str, Any], workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner_temp = tmp_path / "runner-temp"
    record = _recorder(runner_temp)
    (workspace / "more").mkdir()
    inputs = {"paths": "models\nmore", "extra-args": "--strict --no-store", "fail-on": "high"}

    done, _ = _run_step(_step(action, id="scan"), workspace, runner_temp, inputs)

    assert done.returncode == 0, done.stderr
    argv = json.loads(record.read_text())
    assert argv[-3:] == ["--", "models", "more"]
    assert "--strict" in argv
    assert "--no-store" in argv
    monkeypatch.chdir(workspace)
    assert main(argv) == 1


@pytest.mark.parametrize(
    ("inputs", "why"),
    [
        ({"command": "gate", "paths": "models more"}, "gate takes exactly one path"),
        ({"command": "audit"}, "command must be scan or gate"),
    ],
)
def test_bad_inputs_are_exit_code_2(
    action: dict[str, Any], workspace: Path, tmp_path: Path, inputs: dict[str, str], why: str
) -> None:
    runner_temp = tmp_path / "runner-temp"
    record = _recorder(runner_temp)

    done, outputs = _run_step(_step(action, id="scan"), workspace, runner_temp, inputs)

    assert done.returncode == 0  # the upload and the final step decide
    assert outputs["exit-code"] == "2"
    assert why in done.stdout
    assert not record.exists()


@pytest.mark.parametrize(("malicious", "exit_code"), [(True, "1"), (False, "0")])
def test_scan_step_end_to_end(
    action: dict[str, Any], workspace: Path, tmp_path: Path, malicious: bool, exit_code: str
) -> None:
    runner_temp = tmp_path / "runner-temp"
    _real_modelward(runner_temp)
    if not malicious:
        (workspace / "models" / "weights.pkl").unlink()
        np.save(workspace / "models" / "embeddings.npy", np.arange(6, dtype=np.float32))

    done, outputs = _run_step(_step(action, id="scan"), workspace, runner_temp, {})

    assert done.returncode == 0, done.stderr
    assert outputs["exit-code"] == exit_code, done.stdout + done.stderr
    assert outputs["sarif-written"] == "true"
    results = _sarif(Path(outputs["sarif-file"]))["runs"][0]["results"]
    if malicious:
        # One log line per result, for people reading the job's log.
        assert "MW-PICKLE-DANGEROUS-GLOBAL  models/weights.pkl" in done.stdout
        assert results
    else:
        assert not [r for r in results if r.get("level") in ("error", "warning")]

    # The last step turns the recorded code into the job's result.
    final, _ = _final(action, workspace, runner_temp, outputs["exit-code"])
    assert final.returncode == int(exit_code)


def _final(
    action: dict[str, Any], workspace: Path, runner_temp: Path, exit_code: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The last step, with `${{ steps.scan.outputs.exit-code }}` as the runner fills it in."""
    step = dict(_steps(action)[-1], env={"EXIT_CODE": exit_code})
    return _run_step(step, workspace, runner_temp, {})


def test_final_step_without_a_scan_fails(
    action: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    done, _ = _final(action, workspace, runner_temp, "")
    assert done.returncode == 2


def test_files_from_with_empty_paths(
    action: dict[str, Any], workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented way to pass paths with spaces: `paths: ''` and `--files-from LIST`."""
    runner_temp = tmp_path / "runner-temp"
    record = _recorder(runner_temp)
    spaced = workspace / "my models"
    spaced.mkdir()
    (spaced / "weights.pkl").write_bytes(call_system_p4("true"))
    (workspace / "list.txt").write_text("my models/weights.pkl\n")
    inputs = {"paths": "", "extra-args": "--files-from list.txt"}

    done, _ = _run_step(_step(action, id="scan"), workspace, runner_temp, inputs)

    assert done.returncode == 0, done.stderr
    argv = json.loads(record.read_text())
    assert argv[-3:] == ["--files-from", "list.txt", "--"]
    monkeypatch.chdir(workspace)
    assert main(argv) == 1
    uris = {
        location["physicalLocation"]["artifactLocation"]["uri"]
        for result in _sarif(workspace / "modelward.sarif")["runs"][0]["results"]
        for location in result["locations"]
    }
    assert uris == {"my%20models/weights.pkl"}
