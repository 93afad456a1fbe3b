"""Chat-template analysis: real templates are clean, injections are found, nothing renders."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.chat_templates import BENIGN, SSTI
from modelward.findings import Severity
from modelward.formats.jinja_template import (
    EXCERPT_CHARS,
    MAX_TEMPLATE_CHARS,
    analyse_chat_template,
)


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_chat_templates_are_clean(name: str) -> None:
    assert analyse_chat_template(BENIGN[name]) == []


@pytest.mark.parametrize("name", sorted(SSTI))
def test_injection_payloads_are_high(name: str) -> None:
    template, rule_id = SSTI[name]
    issues = analyse_chat_template(template)
    assert rule_id in {i.rule_id for i in issues}
    assert max(i.severity for i in issues) == Severity.HIGH


def test_evidence_is_the_offending_line_bounded() -> None:
    template = "{{ x }}\n" + "{{ 'a' }}" * 200 + "{{ cycler.__init__ }}" + "{{ 'b' }}" * 200
    issues = analyse_chat_template(template)
    assert {i.line for i in issues} == {2}
    assert all("__init__" in i.excerpt and len(i.excerpt) <= EXCERPT_CHARS for i in issues)


def test_repeated_construct_on_one_line_is_one_issue() -> None:
    issues = analyse_chat_template("{{ a|attr('x') }}{{ b|attr('y') }}")
    assert [i.rule_id for i in issues] == ["MW-TEMPLATE-ATTR-FILTER"]


def test_unparseable_template_fails_closed() -> None:
    [issue] = analyse_chat_template("{% for m in messages %}{{ m }")
    assert issue.rule_id == "MW-TEMPLATE-UNPARSED"
    assert issue.severity == Severity.MEDIUM


def test_oversized_and_deeply_nested_templates_fail_closed() -> None:
    [big] = analyse_chat_template("x" * (MAX_TEMPLATE_CHARS + 1))
    assert big.rule_id == "MW-TEMPLATE-UNPARSED"
    [deep] = analyse_chat_template("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")
    assert deep.rule_id == "MW-TEMPLATE-UNPARSED"


def test_analysis_never_renders(tmp_path: Path) -> None:
    marker = tmp_path / "rendered"
    template = "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    assert analyse_chat_template(template)
    assert not marker.exists()


@given(st.text(alphabet=st.sampled_from(list("{}%#()[]'\"._| ~-+*abcxyz_\n")), max_size=200))
def test_fuzz_any_text_gives_issues_not_exceptions(template: str) -> None:
    for issue in analyse_chat_template(template):
        assert issue.rule_id.startswith("MW-TEMPLATE-")
