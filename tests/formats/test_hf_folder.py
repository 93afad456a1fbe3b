"""Hugging Face model folders: custom code, chat templates, pickle weights, symlinks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import modelward
from fixtures.hf_folders import (
    HOSTILE_TEMPLATE,
    add_remote_tokenizer,
    as_cache_snapshot,
    edit_json,
    save_custom_code_model,
    save_plain_folder,
    save_tiny_model,
    save_tokenizer,
)
from modelward.findings import ScanResult, Severity
from modelward.formats.hf_folder import FOLDER_FORMAT, auto_map_references, model_folders
from modelward.scanner import iter_files


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model + tokenizer saved by transformers, copied by each test that edits it."""
    return save_tokenizer(save_tiny_model(tmp_path_factory.mktemp("saved") / "tiny"))


@pytest.fixture()
def model(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "tiny"))


def folder_result(report: modelward.ScanReport) -> ScanResult:
    [result] = [r for r in report.results if r.format == FOLDER_FORMAT]
    return result


def rules(result: ScanResult) -> dict[str, Severity]:
    return {f.rule_id: f.severity for f in result.findings}


def test_benign_saved_model_is_a_clean_model_folder(model: Path) -> None:
    report = modelward.scan(model)
    result = folder_result(report)
    assert result.path == str(model)
    assert result.findings == []
    assert all(f.severity <= Severity.INFO for f in report.findings)


def test_folder_is_found_from_a_file_list_too(model: Path) -> None:
    """The CLI expands folders to files before scanning; folder checks must still run."""
    report = modelward.scan(*iter_files([model]))
    assert folder_result(report).path == str(model)


def test_config_alone_is_not_a_model_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"debug": true}', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    assert list(model_folders(iter_files([tmp_path]))) == []
    assert modelward.scan(tmp_path).findings == []


def test_pickle_weights_beside_safetensors_are_a_note(saved: Path, tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "both", pickle_weights=True)
    [finding] = folder_result(modelward.scan(folder)).findings
    assert (finding.rule_id, finding.severity) == ("MW-HF-PICKLE-WEIGHTS", Severity.LOW)
    assert "pytorch_model.bin" in finding.message
    assert "model.safetensors" in finding.message


@pytest.mark.parametrize("payload", ["return None", "os.system('true')"])
def test_custom_code_is_listed_and_its_module_analysed(tmp_path: Path, payload: str) -> None:
    folder = save_custom_code_model(tmp_path / "custom", tmp_path, payload)
    report = modelward.scan(folder)
    [finding] = folder_result(report).findings
    expected = Severity.CRITICAL if "os.system" in payload else Severity.MEDIUM
    assert (finding.rule_id, finding.severity) == ("MW-HF-CUSTOM-CODE", expected)
    assert "runs its own code when loaded" in finding.message
    [module] = folder.glob("modeling_*.py")
    assert module.name in finding.message
    assert "missing" not in finding.message
    [source] = [r for r in report.results if r.path == str(module)]
    assert source.format == "python-source"
    process = [f for f in source.findings if f.rule_id == "MW-PYCODE-PROCESS"]
    assert bool(process) is ("os.system" in payload)


def test_missing_custom_module_and_code_from_another_repo(tmp_path: Path) -> None:
    folder = save_custom_code_model(tmp_path / "custom", tmp_path)
    for module in folder.glob("modeling_*.py"):
        module.unlink()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    auto_map = config["auto_map"]
    auto_map["AutoModel"] = "attacker/payload--modeling_evil.EvilModel"
    auto_map["AutoTokenizer"] = ["../../../../tmp/evil.Tokenizer", None]
    edit_json(folder / "config.json", auto_map=auto_map)
    result = folder_result(modelward.scan(folder))
    assert rules(result) == {
        "MW-HF-CUSTOM-CODE": Severity.MEDIUM,
        "MW-HF-REMOTE-CODE": Severity.HIGH,
        "MW-HF-CODE-PATH": Severity.HIGH,
    }
    custom = next(f for f in result.findings if f.rule_id == "MW-HF-CUSTOM-CODE")
    assert "missing" in custom.message
    remote = next(f for f in result.findings if f.rule_id == "MW-HF-REMOTE-CODE")
    assert "attacker/payload" in remote.message


def test_auto_map_references_accepts_strings_lists_dicts_and_nulls() -> None:
    auto_map = {"AutoTokenizer": ["tok.Slow", None], "AutoConfig": "cfg.Config", "bad": 3}
    assert auto_map_references(auto_map) == ["tok.Slow", "cfg.Config"]
    # A tokenizer config's legacy list, and an image processor's {backend: ref}.
    assert auto_map_references(["tok.Slow", "tok.Fast"]) == ["tok.Slow", "tok.Fast"]
    backends = {"AutoImageProcessor": {"pil": "img.Slow", "torchvision": "img.Fast"}}
    assert auto_map_references(backends) == ["img.Slow", "img.Fast"]
    assert auto_map_references("not a map") == []


@pytest.mark.parametrize("where", ["jinja-file", "tokenizer-config", "template-list"])
def test_hostile_chat_template_is_reported(model: Path, where: str) -> None:
    if where == "jinja-file":
        (model / "chat_template.jinja").write_text(HOSTILE_TEMPLATE, encoding="utf-8")
    else:
        (model / "chat_template.jinja").unlink(missing_ok=True)
        value: object = HOSTILE_TEMPLATE
        if where == "template-list":
            value = [{"name": "default", "template": "{{ messages }}"}]
            value.append({"name": "tool_use", "template": HOSTILE_TEMPLATE})
        edit_json(model / "tokenizer_config.json", chat_template=value)
    result = folder_result(modelward.scan(model))
    assert result.findings
    assert all(f.rule_id.startswith("MW-TEMPLATE-") for f in result.findings)
    assert max(f.severity for f in result.findings) >= Severity.HIGH


def test_benign_template_in_tokenizer_config_is_clean(model: Path) -> None:
    template = (model / "chat_template.jinja").read_text(encoding="utf-8")
    (model / "chat_template.jinja").unlink()
    edit_json(model / "tokenizer_config.json", chat_template=template)
    assert folder_result(modelward.scan(model)).findings == []


def test_malformed_config_fails_closed(model: Path) -> None:
    (model / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    edit_json(model / "config.json", auto_map="modeling_x.Model")
    assert rules(folder_result(modelward.scan(model))) == {
        "MW-HF-CONFIG-MALFORMED": Severity.MEDIUM
    }


def test_cache_snapshot_links_into_blobs_are_fine(saved: Path, tmp_path: Path) -> None:
    snapshot = as_cache_snapshot(saved, tmp_path / "hub")
    report = modelward.scan(snapshot)
    assert folder_result(report).findings == []
    assert {r.format for r in report.results} >= {"safetensors", FOLDER_FORMAT}


def test_cache_snapshot_link_outside_blobs_is_high(saved: Path, tmp_path: Path) -> None:
    snapshot = as_cache_snapshot(saved, tmp_path / "hub")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("secret", encoding="utf-8")
    os.symlink(outside, snapshot / "special_tokens_map.json")
    os.symlink("../../refs", snapshot / "refs-dir")
    findings = folder_result(modelward.scan(snapshot)).findings
    assert {(f.rule_id, f.severity) for f in findings} == {("MW-HF-SYMLINK-ESCAPE", Severity.HIGH)}
    assert {Path(f.location.path).name for f in findings} == {"special_tokens_map.json", "refs-dir"}


def test_plain_folder_link_outside_the_folder_is_high(model: Path, tmp_path: Path) -> None:
    os.symlink("../../../../etc/hostname", model / "vocab.txt")
    (model / "sub").mkdir()
    os.symlink("../config.json", model / "sub" / "inner.json")  # stays inside: fine
    [finding] = folder_result(modelward.scan(model)).findings
    assert finding.rule_id == "MW-HF-SYMLINK-ESCAPE"
    assert finding.location.path == str(model / "vocab.txt")


def test_a_failing_check_is_a_finding_not_a_crash(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("parser bug")

    monkeypatch.setattr("modelward.analysis.jinja_template.scan_chat_template", broken)
    [finding] = folder_result(modelward.scan(model)).findings
    assert (finding.rule_id, finding.severity) == ("MW-SCAN-ERROR", Severity.MEDIUM)
    assert "parser bug" in (finding.evidence or "")


@pytest.mark.parametrize("kind", ["bert", "llama", "feature-extractor-only", "tokenizer-only"])
def test_plain_save_pretrained_folders_stay_clean(tmp_path: Path, kind: str) -> None:
    folder = save_plain_folder(tmp_path / kind, kind)
    report = modelward.scan(folder)
    assert folder_result(report).findings == []
    assert all(f.severity <= Severity.INFO for f in report.findings)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("return None", Severity.MEDIUM),
        ("return getattr(os, 'sys' + 'tem')('true')", Severity.CRITICAL),
    ],
)
def test_tokenizer_only_folder_with_auto_map_runs_code(
    tmp_path: Path, payload: str, expected: Severity, legacy: bool
) -> None:
    """No config.json: AutoTokenizer still imports the module tokenizer_config.json names."""
    folder = add_remote_tokenizer(save_tokenizer(tmp_path / "tok"), payload, legacy=legacy)
    assert not (folder / "config.json").exists()
    [finding] = folder_result(modelward.scan(folder)).findings
    assert (finding.rule_id, finding.severity) == ("MW-HF-CUSTOM-CODE", expected)
    assert finding.location.path == str(folder / "tokenizer_config.json")
    assert "tokenization_tiny.py" in finding.message


def test_processor_only_folder_with_backend_auto_map(tmp_path: Path) -> None:
    folder = save_plain_folder(tmp_path / "fe", "feature-extractor-only")
    (folder / "image_processing_tiny.py").write_text(
        "import subprocess as sp\n\nclass P:\n    def run(self):\n        sp.run(['true'])\n",
        encoding="utf-8",
    )
    auto_map = {"AutoImageProcessor": {"pil": "image_processing_tiny.P"}}
    edit_json(folder / "preprocessor_config.json", auto_map=auto_map)
    [finding] = folder_result(modelward.scan(folder)).findings
    assert (finding.rule_id, finding.severity) == ("MW-HF-CUSTOM-CODE", Severity.CRITICAL)
    assert "subprocess.run" in finding.message


def test_custom_pipelines_are_code(model: Path) -> None:
    (model / "pipeline_tiny.py").write_text("class P:\n    pass\n", encoding="utf-8")
    pipelines = {"tiny-task": {"impl": "pipeline_tiny.P", "pt": ["AutoModel"], "type": "text"}}
    edit_json(model / "config.json", custom_pipelines=pipelines)
    [finding] = folder_result(modelward.scan(model)).findings
    assert (finding.rule_id, finding.severity) == ("MW-HF-CUSTOM-CODE", Severity.MEDIUM)
    assert "pipeline_tiny.py" in finding.message


def test_relative_imports_of_custom_code_are_graded_too(model: Path) -> None:
    (model / "modeling_tiny.py").write_text("from .helpers import go\n", encoding="utf-8")
    (model / "helpers.py").write_text(
        "import importlib\n\ndef go():\n    importlib.import_module('o' + 's').system('t')\n",
        encoding="utf-8",
    )
    edit_json(model / "config.json", auto_map={"AutoModel": "modeling_tiny.Model"})
    [finding] = folder_result(modelward.scan(model)).findings
    assert finding.severity == Severity.CRITICAL
    assert "helpers.py" in finding.message


def test_custom_generate_is_code(model: Path) -> None:
    (model / "custom_generate").mkdir()
    (model / "custom_generate" / "generate.py").write_text(
        "def generate(model, **kw):\n    return None\n", encoding="utf-8"
    )
    [finding] = folder_result(modelward.scan(model)).findings
    assert (finding.rule_id, finding.severity) == ("MW-HF-CUSTOM-CODE", Severity.MEDIUM)


def test_config_alone_naming_code_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"auto_map": {"AutoConfig": "configuration_x.XConfig"}}), encoding="utf-8"
    )
    (tmp_path / "configuration_x.py").write_text("X = 1\n", encoding="utf-8")
    assert rules(folder_result(modelward.scan(tmp_path))) == {"MW-HF-CUSTOM-CODE": Severity.MEDIUM}


@pytest.mark.parametrize(
    "where", ["processor-config", "additional-templates", "tokenizer-only-jinja"]
)
def test_templates_a_loader_reads_without_config_json(tmp_path: Path, where: str) -> None:
    folder = save_tokenizer(tmp_path / "tok")
    if where == "processor-config":
        (folder / "processor_config.json").write_text(
            json.dumps({"processor_class": "X", "chat_template": HOSTILE_TEMPLATE}),
            encoding="utf-8",
        )
    elif where == "additional-templates":
        (folder / "additional_chat_templates").mkdir()
        (folder / "additional_chat_templates" / "tool_use.jinja").write_text(
            HOSTILE_TEMPLATE, encoding="utf-8"
        )
    else:
        (folder / "chat_template.jinja").write_text(HOSTILE_TEMPLATE, encoding="utf-8")
        edit_json(folder / "tokenizer_config.json", chat_template=None)
    result = folder_result(modelward.scan(folder))
    assert result.findings
    assert all(f.rule_id.startswith("MW-TEMPLATE-") for f in result.findings)
    assert max(f.severity for f in result.findings) >= Severity.HIGH


def test_benign_additional_templates_are_clean(tmp_path: Path) -> None:
    folder = save_tokenizer(tmp_path / "tok")
    (folder / "additional_chat_templates").mkdir()
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    (folder / "additional_chat_templates" / "rag.jinja").write_text(template, encoding="utf-8")
    assert folder_result(modelward.scan(folder)).findings == []
