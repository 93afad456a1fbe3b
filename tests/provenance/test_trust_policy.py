"""The `[policy]` table and the one config loader: unknown keys, discovery, relative paths.

(Named test_trust_policy.py: tests/pickle/test_policy.py already holds the module name
`test_policy`, and test folders are not packages.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelward.config import ConfigError, ScanConfig
from modelward.findings import Severity
from modelward.provenance.policy import ModelwardConfig, Policy, find_config, load_config

FULL = """\
[scan]
allow_globals = ["mypkg.layers.Block"]

[scan.limits]
max_members = 10

[policy]
fail_on = "high"
safetensors_only = true
forbid_pickle = true
require_lock = true
lock_file = "locks/models.lock"

[policy.sources]
allowed_orgs = ["Google", "meta-llama"]
allowed_paths = ["models", "../shared"]

[policy.signatures]
required = true
trusted_keys = ["keys/release.pub.pem"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_key_is_read_and_paths_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = write(tmp_path / "project" / "modelward.toml", FULL)
    monkeypatch.chdir(tmp_path)  # not the config's folder: paths must not follow the cwd
    config = ModelwardConfig.from_file(Path("project/modelward.toml"))
    root = config_file.parent.resolve()
    assert config.scan.allow_globals == frozenset({"mypkg.layers.Block"})
    assert config.scan.limits.max_members == 10
    policy = config.policy
    assert policy.fail_on is Severity.HIGH
    assert policy.safetensors_only and policy.forbid_pickle and policy.require_lock
    assert policy.lock_file == root / "locks" / "models.lock"
    assert policy.sources.allowed_orgs == ("google", "meta-llama")
    assert policy.sources.allowed_paths == (root / "models", tmp_path.resolve() / "shared")
    assert policy.signatures.required
    assert policy.signatures.trusted_keys == (root / "keys" / "release.pub.pem",)


def test_defaults_gate_on_the_scan_alone() -> None:
    policy = Policy()
    assert policy.fail_on is Severity.MEDIUM
    assert not (policy.safetensors_only or policy.forbid_pickle or policy.require_lock)
    assert policy.lock_file is None
    assert not policy.sources.restricted
    assert not policy.signatures.required and policy.signatures.trusted_keys == ()
    assert Policy.from_mapping({}) == policy


def test_require_lock_defaults_the_lock_file(tmp_path: Path) -> None:
    policy = Policy.from_mapping({"require_lock": True}, base_dir=tmp_path)
    assert policy.lock_file == tmp_path.resolve() / "models.lock"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[polcy]\nfail_on = 'low'\n", "polcy"),
        ("[policy]\nfail_on_severity = 'low'\n", "[policy]: unknown key(s) fail_on_severity"),
        ("[policy.sources]\nallowed_org = ['a']\n", "[policy].sources: unknown key(s) allowed_org"),
        ("[policy.signatures]\ntrusted_key = ['k.pem']\n", "[policy].signatures: unknown key(s)"),
        ("[policy.lock]\nfile = 'x'\n", "[policy]: unknown key(s) lock"),
        ("[scan]\nallow_global = ['a.b']\n", "[scan]: unknown key(s) allow_global"),
        ("[scan.limits]\nmax_member = 3\n", "[scan.limits]: unknown key(s) max_member"),
    ],
)
def test_unknown_keys_are_errors_at_every_level(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path / "modelward.toml", text)
    with pytest.raises(ConfigError) as caught:
        ModelwardConfig.from_file(path)
    assert str(path) in str(caught.value)
    assert where in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[policy]\nfail_on = 'severe'\n", "policy.fail_on: unknown severity 'severe'"),
        ("[policy]\nfail_on = 3\n", "policy.fail_on must be a severity name"),
        ("[policy]\nsafetensors_only = 'yes'\n", "policy.safetensors_only must be true or false"),
        ("[policy]\nlock_file = ''\n", "policy.lock_file must be a non-empty path"),
        ("[policy]\nsources = 1\n", "[policy.sources] must be a table"),
        ("policy = 1\n", "[policy] must be a table"),
        ("[policy.sources]\nallowed_orgs = 'google'\n", "allowed_orgs must be a list of strings"),
        ("[policy.sources]\nallowed_orgs = ['google/gemma']\n", "must be an organisation name"),
        ("[policy.signatures]\nrequired = true\n", "trusted_keys is empty"),
        ("[policy.signatures]\nrequired = 1\n", "policy.signatures.required must be true or false"),
    ],
)
def test_bad_values_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "modelward.toml", text)
    with pytest.raises(ConfigError) as caught:
        ModelwardConfig.from_file(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_pyproject_tool_modelward_table(tmp_path: Path) -> None:
    text = (
        "[project]\nname = 'x'\n\n[tool.modelward.policy]\nforbid_pickle = true\n\n"
        "[tool.modelward.policy.signatures]\ntrusted_keys = ['k.pub.pem']\n"
    )
    path = write(tmp_path / "pyproject.toml", text)
    assert find_config(tmp_path) == path
    config = load_config(folder=tmp_path)
    assert config.path == path
    assert config.policy.forbid_pickle
    assert config.policy.signatures.trusted_keys == (tmp_path.resolve() / "k.pub.pem",)


def test_pyproject_unknown_key_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", "[tool.modelward.policy]\nforbid = true\n")
    with pytest.raises(
        ConfigError, match=re.escape("pyproject.toml [policy]: unknown key(s) forbid")
    ):
        load_config(folder=tmp_path)
    assert path.exists()


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config() is None
    assert load_config() == ModelwardConfig()
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    assert find_config() is None  # a pyproject without [tool.modelward] is not a config
    write(tmp_path / "pyproject.toml", "[tool.modelward.policy]\nfail_on = 'low'\n")
    assert find_config() == tmp_path / "pyproject.toml"
    assert load_config().policy.fail_on is Severity.LOW
    write(tmp_path / "modelward.toml", "[policy]\nfail_on = 'critical'\n")
    assert find_config() == tmp_path / "modelward.toml"
    assert load_config().policy.fail_on is Severity.CRITICAL
    explicit = write(tmp_path / "ci" / "gate.toml", "[policy]\nfail_on = 'info'\n")
    assert load_config(explicit).policy.fail_on is Severity.INFO


def test_scan_config_reads_a_file_with_a_policy_table(tmp_path: Path) -> None:
    path = write(tmp_path / "modelward.toml", FULL)
    assert ScanConfig.from_file(path).limits.max_members == 10
    with pytest.raises(ConfigError, match=re.escape("unknown key(s) extra")):
        ScanConfig.from_mapping({"extra": {}}, "x")


def test_unreadable_config_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "modelward.toml", "[policy\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20)


@given(key=NAME, table=st.sampled_from(["", "sources", "signatures"]))
def test_any_unknown_policy_key_is_rejected(key: str, table: str) -> None:
    known = {
        "": Policy.__dataclass_fields__.keys(),
        "sources": {"allowed_orgs", "allowed_paths"},
        "signatures": {"required", "trusted_keys"},
    }[table]
    if key in known:
        return
    data = {key: True} if not table else {table: {key: True}}
    with pytest.raises(ConfigError, match=re.escape(f"unknown key(s) {key}")):
        Policy.from_mapping(data, "hyp.toml")
