"""The raw pickle format: content sniffing, streams back to back, trailing data, damage,
the allow-list extension, and the canary check through the public API and the CLI."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import modelward
from fixtures.pickles import (
    MALICIOUS,
    call_system_p4,
    canary_payloads,
    plain_containers,
    scan_bytes,
    scan_stream,
)
from modelward.cli.main import main
from modelward.config import ScanConfig
from modelward.findings import Severity
from modelward.formats.pickle import looks_like_pickle

NOT_PICKLES = [
    b"# a model card\n\nThis model was trained on ...\n",
    b"Lorem ipsum dolor sit amet\n",
    b"No warranty.\n",
    b"I think therefore I am\n",
    b"(c) 2024 Example Corp\nAll rights reserved\n",
    b"(c) 2024 Example Corp\nAll rights reserved\nMore text: see LICENSE for terms.\n" * 50,
    b"contents\nof the\nmodel card\n" * 100,
    b"Some text\n",
    b'{"architectures": ["BertModel"], "hidden_size": 768}\n',
    b"1,2,3\n4,5,6\n",
    b"import torch\nprint('hi')\n",
    b"]\n",
    b"\x80\x09garbage",
    b"",
]


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_is_sniffed(protocol: int) -> None:
    assert looks_like_pickle(plain_containers(protocol)[:4096])
    assert looks_like_pickle(pickle.dumps(None, protocol=protocol))


@pytest.mark.parametrize("head", NOT_PICKLES)
def test_text_is_not_a_pickle(head: bytes) -> None:
    assert not looks_like_pickle(head)


def test_readme_stays_text_and_pickle_is_detected(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_bytes(NOT_PICKLES[0])
    (tmp_path / "model.bin").write_bytes(plain_containers(0))
    (tmp_path / "evil.pkl").write_bytes(MALICIOUS["inst"]())
    report = modelward.scan(tmp_path)
    formats = {Path(r.path).name: r.format for r in report.results}
    assert formats == {"README.md": "text", "model.bin": "pickle", "evil.pkl": "pickle"}
    [evil] = [r for r in report.results if r.path.endswith("evil.pkl")]
    assert evil.max_severity == Severity.CRITICAL
    assert not [r for r in report.results if r.format != "pickle" and r.findings]


def test_streams_back_to_back_are_all_walked() -> None:
    data = b"".join(pickle.dumps([i], protocol=i) for i in range(6))
    walked, findings = scan_bytes(data)
    assert walked == 6
    assert findings == []


def test_max_streams_stops_quietly() -> None:
    data = pickle.dumps(1) + call_system_p4() + b"\x00not a pickle"
    walked, findings = scan_bytes(data, max_streams=1)
    assert (walked, findings) == (1, [])


def test_stream_is_read_from_its_current_position() -> None:
    prefix = b"\x00" * 10
    stream = io.BytesIO(prefix + call_system_p4())
    stream.seek(len(prefix))
    walked, [finding] = scan_stream(stream)
    assert walked == 1
    assert call_system_p4()[finding.location.offset] == 0x93


def test_too_many_streams_is_a_finding() -> None:
    config = ScanConfig.from_mapping({"scan": {"limits": {"max_pickle_streams": 2}}})
    walked, [finding] = scan_bytes(pickle.dumps(1) * 3, config=config)
    assert walked == 2
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-LIMIT", Severity.MEDIUM)


def test_trailing_bytes_are_low() -> None:
    data = pickle.dumps({"a": 1}, protocol=4)
    walked, [finding] = scan_bytes(data + b"\x00\xff trailing junk")
    assert walked == 1
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-TRAILING", Severity.LOW)
    assert finding.location.offset == len(data)


def test_truncated_stream_keeps_what_was_found_before() -> None:
    data = call_system_p4()[:-1]  # no STOP: a loader has already run REDUCE
    _, findings = scan_bytes(data)
    rules = {f.rule_id: f.severity for f in findings}
    assert rules == {
        "MW-PICKLE-DANGEROUS-GLOBAL": Severity.CRITICAL,
        "MW-PICKLE-MALFORMED": Severity.MEDIUM,
    }


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x04\x8c\x02os",  # string cut short
        b"\x80\x04\xff",  # not an opcode
        b"\x80\x04R.",  # REDUCE on an empty stack
        b"\x80\x04h\x07.",  # memo key never stored
        b"\x80\x04t.",  # TUPLE without MARK
        b"\x80\x07N.",  # unknown protocol
    ],
)
def test_damage_is_medium_malformed(data: bytes) -> None:
    walked, [finding] = scan_bytes(data)
    assert walked == 1
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-MALFORMED", Severity.MEDIUM)


def test_allow_globals_extends_but_never_overrides_deny() -> None:
    unknown = MALICIOUS["unknown-callable"]()
    config = ScanConfig(allow_globals=frozenset({"mytools.shell.run", "os.system"}))
    [allowed] = scan_bytes(unknown, config=config)[1]
    assert (allowed.rule_id, allowed.severity) == ("MW-PICKLE-ALLOWED-BY-CONFIG", Severity.INFO)
    [denied] = scan_bytes(call_system_p4(), config=config)[1]
    assert denied.severity == Severity.CRITICAL
    assert "deny-list always wins" in denied.message


def test_allowed_global_is_exact_not_a_prefix() -> None:
    data = MALICIOUS["unknown-callable"]().replace(b"\x03run", b"\x03ru2")
    config = ScanConfig(allow_globals=frozenset({"mytools.shell.run"}))
    [finding] = scan_bytes(data, config=config)[1]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-UNKNOWN-GLOBAL", Severity.HIGH)


def test_referenced_unknown_is_info_called_is_high() -> None:
    referenced = b"\x80\x04" + b"\x8c\x05mypkg\x8c\x05Thing\x93."
    [finding] = scan_bytes(referenced)[1]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-UNKNOWN-GLOBAL", Severity.INFO)
    assert finding.evidence == "mypkg.Thing referenced only"
    called = referenced[:-1] + b")R."
    [finding] = scan_bytes(called)[1]
    assert (finding.rule_id, finding.severity) == ("MW-PICKLE-UNKNOWN-GLOBAL", Severity.HIGH)
    assert finding.evidence == "mypkg.Thing called with ()"
    strict = scan_bytes(referenced, config=ScanConfig(strict=True))[1]
    assert [(f.rule_id, f.severity) for f in strict] == [
        ("MW-PICKLE-UNKNOWN-GLOBAL", Severity.MEDIUM)
    ]


def test_canary_is_never_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    canary = tmp_path / "canary"
    folder = tmp_path / "models"
    folder.mkdir()
    payloads = canary_payloads(str(canary))
    for name, data in payloads.items():
        (folder / f"{name}.pkl").write_bytes(data)

    report = modelward.scan(folder)
    assert len(report.results) == len(payloads)
    for result in report.results:
        assert result.format == "pickle"
        assert result.max_severity == Severity.CRITICAL, result.path

    assert main(["scan", str(folder), "--format", "json"]) == 1
    cli_report = json.loads(capsys.readouterr().out)
    assert all(r["max_severity"] == "critical" for r in cli_report["results"])
    assert len(cli_report["results"]) == len(payloads)
    assert not canary.exists()


def test_scanner_works_without_torch_or_numpy() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'numpy', 'sklearn', 'joblib'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "import modelward.formats.pickle as p\n"
        "assert p.looks_like_pickle(b'\\x80\\x04N.')\n"
        "import modelward, pathlib, tempfile\n"
        "d = pathlib.Path(tempfile.mkdtemp()) / 'x.pkl'\n"
        "d.write_bytes(b\"cos\\nsystem\\n(S'true'\\ntR.\")\n"
        "print(modelward.scan(d).results[0].max_severity.name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CRITICAL"
