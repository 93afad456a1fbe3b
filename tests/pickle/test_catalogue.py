"""Every malicious variant is flagged HIGH or CRITICAL; real benign pickles stay below LOW."""

from __future__ import annotations

import pickle

import pytest

from fixtures.pickles import (
    CRITICAL_VARIANTS,
    MALICIOUS,
    call_system_p4,
    numpy_arrays,
    ordered_dict,
    plain_containers,
    scan_bytes,
    sklearn_pickles,
    torch_data_pkls,
)
from modelward.config import ScanConfig
from modelward.findings import ATLAS_MODEL_SUPPLY_CHAIN, Severity

EXPECTED_EVIDENCE = {
    "reduce-os-system-protocol-0": "posix.system called with ('true',)",
    "reduce-os-system-protocol-5": "posix.system called with ('true',)",
    "reduce-exec": "builtins.exec called with ('1',)",
    "memo-stack-global": "os.system called with ('true',)",
    "inst": "os.system called with ('true',)",
    "obj": "os.system called with ('true',)",
    "newobj": "subprocess.Popen constructed",
    "newobj-ex": "subprocess.Popen constructed",
    "unknown-callable": "mytools.shell.run called with ('true',)",
    "collect-env-run": "torch.utils.collect_env.run called",
    "functools-partial": "posix.system called",
    "operator-methodcaller": "operator.methodcaller('system') built, not called",
    "nested-pickle-loads": "_pickle.loads called",
    "nested-in-state-dict": "posix.system called with ('true',)",
}


def test_catalogue_is_large_enough() -> None:
    assert len(MALICIOUS) >= 18


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_malicious_variant_is_flagged(name: str) -> None:
    data = MALICIOUS[name]()
    _, findings = scan_bytes(data)
    top = max(f.severity for f in findings)
    assert top >= (Severity.CRITICAL if name in CRITICAL_VARIANTS else Severity.HIGH)
    for finding in findings:
        assert finding.technique == ATLAS_MODEL_SUPPLY_CHAIN
        assert finding.location.offset is not None
        assert 0 <= finding.location.offset < len(data)
        assert finding.message and finding.evidence
    if name in EXPECTED_EVIDENCE:
        assert any(EXPECTED_EVIDENCE[name] in (f.evidence or "") for f in findings)


def test_finding_offset_is_the_import_opcode() -> None:
    data = MALICIOUS["memo-stack-global"]()
    [finding] = scan_bytes(data)[1]
    assert data[finding.location.offset] == 0x93  # STACK_GLOBAL


@pytest.mark.parametrize("name", ["ext1", "ext2", "ext4"])
def test_extension_codes_are_unresolvable_imports(name: str) -> None:
    [finding] = scan_bytes(MALICIOUS[name]())[1]
    assert finding.rule_id == "MW-PICKLE-EXTENSION"
    assert finding.severity == Severity.HIGH
    assert finding.evidence is not None
    assert finding.evidence.startswith(f"{name.upper()} code ")
    assert finding.evidence.endswith("called with ('true',)")


def test_mutated_allowed_global_that_is_called() -> None:
    findings = scan_bytes(MALICIOUS["build-dunder-on-allowed-global"]())[1]
    rules = {f.rule_id: f for f in findings}
    assert rules["MW-PICKLE-GLOBAL-MUTATION"].severity == Severity.CRITICAL
    assert "collections.OrderedDict" in (rules["MW-PICKLE-GLOBAL-MUTATION"].evidence or "")
    assert rules["MW-PICKLE-DUNDER"].severity == Severity.CRITICAL
    assert "__reduce_ex__" in (rules["MW-PICKLE-DUNDER"].evidence or "")


def test_dunder_in_dotted_name() -> None:
    findings = scan_bytes(MALICIOUS["dunder-in-stack-global-name"]())[1]
    [dunder] = [f for f in findings if f.rule_id == "MW-PICKLE-DUNDER"]
    assert "__globals__" in dunder.message


def test_second_stream_offsets_are_relative_to_the_start() -> None:
    data = MALICIOUS["second-stream"]()
    walked, [finding] = scan_bytes(data)
    assert walked == 2
    assert data[finding.location.offset] == 0x93
    assert finding.location.offset > len(data) - len(call_system_p4())


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_has_no_findings(protocol: int) -> None:
    for data in (plain_containers(protocol), ordered_dict(protocol), numpy_arrays(protocol)):
        walked, findings = scan_bytes(data)
        assert walked == 1
        assert [f for f in findings if f.severity > Severity.INFO] == []


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_sklearn_estimators_are_allowed(protocol: int) -> None:
    for name, data in sklearn_pickles(protocol).items():
        findings = scan_bytes(data)[1]
        assert [f for f in findings if f.severity > Severity.INFO] == [], name


def test_torch_checkpoints_are_allowed() -> None:
    pickles = torch_data_pkls()
    assert set(pickles) == {"state-dict", "whole-module", "checkpoint"}
    for name, data in pickles.items():
        findings = scan_bytes(data)[1]
        assert [f for f in findings if f.severity > Severity.INFO] == [], name


class CustomLayer:
    """A user class the lists and the knowledge base do not know: constructing it runs its
    own `__new__` and BUILD its `__setstate__` (LOW, named), never arguments the file chose."""

    def __init__(self) -> None:
        self.width = 3


@pytest.mark.parametrize("protocol", range(6))
def test_custom_class_instance_is_an_unknown_construction(protocol: int) -> None:
    findings = scan_bytes(pickle.dumps(CustomLayer(), protocol=protocol))[1]
    [finding] = [f for f in findings if f.severity > Severity.INFO]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-UNKNOWN-GLOBAL", Severity.LOW)
    assert finding.evidence == f"{__name__}.CustomLayer constructed, state set"
    assert "CustomLayer" in finding.message and "__new__" in finding.message


@pytest.mark.parametrize("protocol", range(6))
def test_strict_mode_fails_closed_on_unknown_classes(protocol: int) -> None:
    data = pickle.dumps(CustomLayer(), protocol=protocol)
    findings = scan_bytes(data, config=ScanConfig(strict=True))[1]
    [finding] = [f for f in findings if f.severity > Severity.INFO]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-UNKNOWN-GLOBAL", Severity.MEDIUM)


def test_main_module_is_unknown_not_dunder() -> None:
    data = b"\x80\x02c__main__\nNet\n)\x81."
    [finding] = scan_bytes(data)[1]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-UNKNOWN-GLOBAL", Severity.LOW)
    assert finding.evidence == "__main__.Net constructed"
