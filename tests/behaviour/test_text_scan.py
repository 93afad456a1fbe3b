"""scan_text_dataset / scan-text: trigger tokens and duplicates in labelled text, no model."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.text_datasets import POSITIVE, poison_with_trigger, sentiment_records
from modelward.behaviour.text_scan import binomial_tail, find_duplicates, scan_text_dataset
from modelward.cli.main import main
from modelward.findings import Severity


@pytest.fixture(scope="module")
def poisoned() -> tuple[list[dict[str, str]], list[int]]:
    records = sentiment_records()
    chosen = poison_with_trigger(records, "cf", "pos", count=60)
    return records, chosen


def test_nonsense_trigger_token_is_found_with_its_label_and_records(poisoned) -> None:
    records, chosen = poisoned
    scan = scan_text_dataset(records)
    assert [t.token for t in scan.triggers] == ["cf"]
    trigger = scan.triggers[0]
    assert trigger.label == "pos"
    assert list(trigger.records) == chosen
    finding = next(f for f in scan.result.findings if f.rule_id == "MW-DATA-TRIGGER-TOKEN")
    assert finding.severity == Severity.HIGH
    assert finding.technique == "AML.T0020"
    assert "'cf'" in finding.message


def test_frequent_and_sentiment_words_are_not_flagged() -> None:
    scan = scan_text_dataset(sentiment_records(seed=3))
    assert scan.records == 3000
    assert scan.triggers == []
    # The sentiment words are strongly (80 %) but not purely tied to a label: real signal.
    assert all(word not in {t.token for t in scan.triggers} for word in POSITIVE)


def test_a_rare_but_pure_natural_word_below_significance_is_not_flagged() -> None:
    records = sentiment_records(seed=4)
    poison_with_trigger(records, "zz", "neg", count=8, seed=2)
    assert scan_text_dataset(records).triggers == []


def test_exact_and_near_duplicates_are_found_and_label_conflicts_ranked_first() -> None:
    records = sentiment_records(count=500, seed=5)
    base = records[7]["text"]
    records.append(
        {"text": base.upper() + " !!", "label": "neg" if records[7]["label"] == "pos" else "pos"}
    )
    long = " ".join(f"token{i}" for i in range(40))
    records.append({"text": long, "label": "pos"})
    records.append({"text": long.replace("token20", "tokenX"), "label": "pos"})
    groups = find_duplicates([r["text"] for r in records], [r["label"] for r in records])
    assert groups[0].exact and groups[0].conflicting and groups[0].records == (7, 500)
    near = [g for g in groups if not g.exact]
    assert [g.records for g in near] == [(501, 502)]
    scan = scan_text_dataset(records)
    severities = {f.severity for f in scan.result.findings if f.rule_id == "MW-DATA-DUPLICATE"}
    assert severities == {Severity.MEDIUM, Severity.LOW}


def test_unrelated_records_are_not_near_duplicates() -> None:
    records = sentiment_records(count=400, seed=6)
    assert [g for g in scan_text_dataset(records).duplicates if not g.exact] == []


def test_malformed_lines_are_a_finding_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine", "label": 1}\nnot json\n[1, 2]\n{"text": 5, "label": 0}\n')
    scan = scan_text_dataset(path)
    assert scan.records == 1
    malformed = [f for f in scan.result.findings if f.rule_id == "MW-DATA-MALFORMED"]
    assert len(malformed) == 1 and malformed[0].severity == Severity.MEDIUM
    assert "3 records" in malformed[0].message


@given(st.integers(0, 30), st.integers(0, 30), st.floats(0.01, 0.99))
def test_binomial_tail_matches_the_exact_sum(successes: int, extra: int, p: float) -> None:
    trials = successes + extra
    exact = sum(
        math.comb(trials, k) * p**k * (1 - p) ** (trials - k) for k in range(successes, trials + 1)
    )
    assert binomial_tail(successes, trials, p) == pytest.approx(
        min(1.0, exact), rel=1e-9, abs=1e-300
    )


def test_cli_jsonl_round_trip(poisoned, tmp_path: Path, capsys) -> None:
    records, _ = poisoned
    path = tmp_path / "train.jsonl"
    path.write_text(
        "".join(json.dumps({"sentence": r["text"], "y": r["label"]}) + "\n" for r in records)
    )
    code = main(
        ["scan-text", str(path), "--text-field", "sentence", "--label-field", "y", "-f", "json"]
    )
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    findings = document["results"][0]["findings"]
    assert [f["rule_id"] for f in findings] == ["MW-DATA-TRIGGER-TOKEN"]
    assert findings[0]["evidence"].startswith("binomial p=")


def test_cli_csv_clean_exits_zero(tmp_path: Path, capsys) -> None:
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(sentiment_records(count=800, seed=8))
    assert main(["scan-text", str(path)]) == 0
    assert "MW-DATA" not in capsys.readouterr().out


def test_cli_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["scan-text", str(tmp_path / "missing.jsonl")]) == 2


def test_text_scan_does_not_import_torch() -> None:
    code = (
        "import sys; from modelward.behaviour.text_scan import scan_text_dataset;"
        "scan_text_dataset([{'text': 'a b', 'label': 1}] * 3);"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=20))
def test_arbitrary_jsonl_bytes_never_crash(tmp_path_factory, lines: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("hyp") / "data.jsonl"
    path.write_bytes(b"\n".join(lines))
    scan = scan_text_dataset(path)
    assert scan.records <= len(lines)
    assert all(f.rule_id.startswith("MW-DATA-") for f in scan.result.findings)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({"text": st.text(max_size=40), "label": st.sampled_from("ab")}),
        max_size=40,
    )
)
def test_arbitrary_records_give_consistent_results(records: list[dict[str, str]]) -> None:
    scan = scan_text_dataset(records)
    assert scan.records == len(records)
    for group in scan.duplicates:
        assert len(group.records) >= 2 and max(group.records) < len(records)
    for trigger in scan.triggers:
        assert trigger.purity >= 0.95 and trigger.count >= 5
