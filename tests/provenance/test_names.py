"""Look-alike names: each trick is caught with what it imitates and why; known names are clean."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelward.cli.main import main
from modelward.findings import Severity
from modelward.provenance.lock import LockedModel, write_lock
from modelward.provenance.names import (
    KnownNames,
    check_model_id,
    check_package,
    edit_distance,
    max_distance,
    popular_names,
    skeleton,
)

ROOT = Path(__file__).resolve().parents[2]


def _listed(name: str) -> list[str]:
    text = files("modelward").joinpath("data", name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize(
    ("model_id", "rule", "resembles", "why"),
    [
        ("facebok/opt-350m", "MW-NAME-TYPOSQUAT", "facebook", "edit distance 1"),
        ("hf-internal-tesing/tiny-random-gpt2", "MW-NAME-TYPOSQUAT", "hf-internal-testing", "1"),
        ("meta-llama-official/Meta-Llama-3-8B", "MW-NAME-TYPOSQUAT", "meta-llama", "'-official'"),
        ("meta-llama-hf/Llama-2-7b-hf", "MW-NAME-TYPOSQUAT", "meta-llama", "'-hf'"),
        ("google-ai/gemma-2b", "MW-NAME-TYPOSQUAT", "google", "'-ai'"),
        ("mistralai-org/Mistral-7B-v0.1", "MW-NAME-TYPOSQUAT", "mistralai", "'-org'"),
        ("real-openai/whisper-tiny", "MW-NAME-TYPOSQUAT", "openai", "'real-'"),
        ("the-stabilityai/sdxl-turbo", "MW-NAME-TYPOSQUAT", "stabilityai", "'the-'"),
        ("openai_community/gpt2", "MW-NAME-TYPOSQUAT", "openai-community", "separators"),
        ("metallama/Llama-2-7b-hf", "MW-NAME-TYPOSQUAT", "meta-llama", "separators"),
        (
            "m\u0435ta-llama/Llama-2-7b-hf",
            "MW-NAME-HOMOGLYPH",
            "meta-llama",
            "U+0435 at position 1",
        ),
        ("g\u03bfogle/gemma-2b", "MW-NAME-HOMOGLYPH", "google", "U+03BF at position 1"),
        ("\uff4d\uff45\uff54\uff41-llama/x", "MW-NAME-HOMOGLYPH", "meta-llama", "full-width"),
        ("rnistralai/Mistral-7B-v0.1", "MW-NAME-HOMOGLYPH", "mistralai", "'rn' at position 0"),
        ("goog1e/gemma-2b", "MW-NAME-HOMOGLYPH", "google", "'1' at position 4"),
        ("googIe/gemma-2b", "MW-NAME-HOMOGLYPH", "google", "'I' at position 4"),
        ("micr0soft/phi-2", "MW-NAME-HOMOGLYPH", "microsoft", "'0' at position 4"),
        ("openai-community/gtp2", "MW-NAME-TYPOSQUAT", "openai-community/gpt2", "distance 1"),
        (
            "mistralai/Mistral-7B-lnstruct-v0.2",
            "MW-NAME-HOMOGLYPH",
            "mistralai/Mistral-7B-Instruct-v0.2",
            "'l' at position 11",
        ),
        ("someone/Llama-3-8B", "MW-NAME-ORG-CONFUSION", "meta-llama/Meta-Llama-3-8B", "someone"),
        (
            "someone/Meta-Llama-3-8B-Instruct-GGUF",
            "MW-NAME-ORG-CONFUSION",
            "meta-llama/Meta-Llama-3-8B-Instruct",
            "not a known organisation",
        ),
        (
            "Bert-Team/bert-base-uncased",
            "MW-NAME-ORG-CONFUSION",
            "google-bert/bert-base-uncased",
            "",
        ),
        ("\u0430cme/model", "MW-NAME-NON-ASCII", "", "ASCII"),
    ],
)
def test_look_alike_model_ids(model_id: str, rule: str, resembles: str, why: str) -> None:
    (match,) = check_model_id(model_id)
    assert (match.rule_id, match.resembles) == (rule, resembles)
    assert why in match.reason.replace("'\u0435' (U+0435)", "U+0435").replace(
        "'\u03bf' (U+03BF)", "U+03BF"
    )
    assert match.severity >= Severity.MEDIUM


def test_every_listed_model_and_org_is_clean() -> None:
    for model_id in _listed("popular_models.txt"):
        assert check_model_id(model_id) == [], model_id
        assert check_model_id(f"{model_id}@main") == [], model_id
    for org in _listed("popular_orgs.txt"):
        assert check_model_id(f"{org}/some-private-finetune") == [], org


@pytest.mark.parametrize(
    "model_id",
    [
        "acme/tiny-bert",  # unknown org, unknown model: nothing to compare with
        "meta-llama/Llama-5-8B",  # a known org's model that is not in the list
        "TheBloke/Llama-2-7B-Chat-GGUF",  # known re-uploaders are known organisations
        "META-LLAMA/meta-llama-3-8b",  # hub ids are case-insensitive
        "gpt2",  # legacy id without an organisation
    ],
)
def test_plausible_model_ids_are_clean(model_id: str) -> None:
    assert check_model_id(model_id) == []


@pytest.mark.parametrize(
    ("package", "rule", "resembles", "severity"),
    [
        ("reqeusts", "MW-NAME-PACKAGE-TYPOSQUAT", "requests", Severity.HIGH),
        ("numpyy", "MW-NAME-PACKAGE-TYPOSQUAT", "numpy", Severity.HIGH),
        ("urlib3", "MW-NAME-PACKAGE-TYPOSQUAT", "urllib3", Severity.HIGH),
        ("python-dateutl", "MW-NAME-PACKAGE-TYPOSQUAT", "python-dateutil", Severity.HIGH),
        ("pythondateutil", "MW-NAME-PACKAGE-TYPOSQUAT", "python-dateutil", Severity.HIGH),
        ("scikit-lerarn", "MW-NAME-PACKAGE-TYPOSQUAT", "scikit-learn", Severity.HIGH),
        ("matplottlibb", "MW-NAME-PACKAGE-TYPOSQUAT", "matplotlib", Severity.MEDIUM),
        ("r\u0435quests", "MW-NAME-HOMOGLYPH", "requests", Severity.HIGH),
        ("nurnpy", "MW-NAME-HOMOGLYPH", "numpy", Severity.HIGH),
        ("pytorch", "MW-NAME-PACKAGE-ALIAS", "torch", Severity.LOW),
        ("sklearn", "MW-NAME-PACKAGE-ALIAS", "scikit-learn", Severity.LOW),
    ],
)
def test_package_typosquats(package: str, rule: str, resembles: str, severity: Severity) -> None:
    (match,) = check_package(package)
    assert (match.rule_id, match.resembles, match.severity) == (rule, resembles, severity)


@pytest.mark.parametrize(
    "package", ["requests", "numpy", "scikit_learn", "Scikit.Learn", "torch", "my-private-tool"]
)
def test_known_and_unlike_packages_are_clean(package: str) -> None:
    assert check_package(package) == []


def test_every_listed_package_is_clean() -> None:
    """Popular projects are clean, except the alias notes (`jwt` is popular and not PyJWT)."""
    aliases = popular_names().package_aliases
    flagged = {p: check_package(p) for p in _listed("popular_packages.txt")}
    assert {p: m[0].rule_id for p, m in flagged.items() if m} == {
        p: "MW-NAME-PACKAGE-ALIAS" for p in flagged if p in aliases
    }


def test_edit_distance() -> None:
    assert edit_distance("requests", "reqeusts") == 1  # a swap is one edit
    assert edit_distance("numpy", "numpyy") == 1
    assert edit_distance("torch", "tensor") == 5
    assert edit_distance("", "abc") == 3
    assert skeleton("rnicrosoft") == skeleton("microsoft")


@given(
    st.sampled_from(sorted(popular_names().packages.names)),
    st.integers(min_value=0, max_value=200),
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
    st.sampled_from(["insert", "delete", "substitute", "swap"]),
)
def test_index_finds_every_single_edit(name: str, at: int, char: str, edit: str) -> None:
    """The deletion index misses no one-edit variant of a listed name (length 4 and up)."""
    i = at % (len(name) + 1)
    if edit == "insert":
        variant = name[:i] + char + name[i:]
    elif edit == "delete":
        variant = name[: i - 1] + name[i:] if i else name[1:]
    elif edit == "substitute":
        variant = name[: min(i, len(name) - 1)] + char + name[min(i, len(name) - 1) + 1 :]
    else:
        j = min(i, len(name) - 2)
        variant = name[:j] + name[j + 1] + name[j] + name[j + 2 :]
    known = popular_names().packages
    if variant in known.names or len(name) < 4 or len(variant) < 4:
        return
    near = known.nearest(variant)
    assert near is not None
    assert near[1] == 1


def test_index_agrees_with_brute_force() -> None:
    """Two edits away from a long name (a swap and a substitution) is still found."""
    listed = ["transformers", "tokenizers", "accelerate", "datasets", "safetensors"]
    known = KnownNames(listed)
    for candidate in ["transfromers", "tokenizer", "acclerate", "datasest", "safetenzorz", "xyz"]:
        within = [
            (edit_distance(candidate, k), k)
            for k in listed
            if 0 < edit_distance(candidate, k) <= max_distance(len(k))
        ]
        expected = min(within) if within else None
        near = known.nearest(candidate)
        assert (None if near is None else (near[1], near[0])) == expected


def test_check_is_fast() -> None:
    popular_names()
    candidates = [f"{p}x" for p in _listed("popular_packages.txt")[:300]]
    start = time.perf_counter()
    for candidate in candidates:
        check_package(candidate)
        check_model_id(f"{candidate}/{candidate}")
    assert time.perf_counter() - start < 1.5


def test_cli_ids_lock_and_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["names"]) == 2  # nothing given and no models.lock here
    capsys.readouterr()
    write_lock(
        tmp_path / "models.lock",
        [
            LockedModel("facebok/opt-350m@" + "a" * 40, "sha256", "sha256:00"),
            LockedModel("meta-llama/Meta-Llama-3-8B@" + "b" * 40, "sha256", "sha256:00"),
        ],
    )
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("numpy==1.26.4\nreqeusts==2.0\nscikit_learn\n", encoding="utf-8")
    assert main(["names", "someone/Llama-3-8B", "-r", str(reqs), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    found = {(r["path"], f["rule_id"]) for r in report["results"] for f in r["findings"]}
    assert found == {
        ("<command line>", "MW-NAME-ORG-CONFUSION"),
        (str(reqs), "MW-NAME-PACKAGE-TYPOSQUAT"),
    }
    assert main(["names", "--format", "sarif"]) == 1  # ./models.lock by default
    sarif = json.loads(capsys.readouterr().out)
    (result,) = sarif["runs"][0]["results"]
    assert "facebook" in result["message"]["text"]
    assert main(["names", "meta-llama/Meta-Llama-3-8B", "google/gemma-2b"]) == 0
    assert main(["names", "-r", str(tmp_path / "missing.txt")]) == 2


def test_refresh_script_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("popular_models.txt", "popular_orgs.txt"):
        shutil.copy(files("modelward").joinpath("data", name), data / name)  # type: ignore[arg-type]
    tsv = tmp_path / "pypi.tsv"
    tsv.write_text(
        "name\tversion\tmonth\trank_among_15000_most_downloaded\tsummary\n"
        "Requests\t2\t2024-01\t2\tHTTP\nboto3\t1\t2024-01\t1\tAWS\nobscure\t1\t2024-01\t\tx\n"
        "typing_extensions\t4\t2024-01\t3\ttypes\n",
        encoding="utf-8",
    )
    hub = tmp_path / "models.json"
    hub.write_text(json.dumps([{"id": "newlab/brand-new-7b"}, {"id": "not an id"}]))
    script = ROOT / "scripts" / "refresh_popular_names.py"
    args = ["--pypi", str(tsv), "--hf-models", str(hub), "--data", str(data)]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    packages = (data / "popular_packages.txt").read_text(encoding="utf-8").splitlines()
    assert [p for p in packages if not p.startswith("#")] == [
        "boto3",
        "requests",
        "typing-extensions",
    ]
    models = (data / "popular_models.txt").read_text(encoding="utf-8")
    assert "newlab/brand-new-7b\n" in models and "meta-llama/Meta-Llama-3-8B\n" in models
    assert "newlab" in (data / "popular_orgs.txt").read_text(encoding="utf-8").splitlines()
