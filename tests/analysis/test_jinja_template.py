"""Chat-template analysis: real templates are clean, injections are found, nothing renders."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.chat_templates import BENIGN, COMPUTED_NAMES, SSTI
from modelward.analysis.jinja_template import (
    EXCERPT_CHARS,
    MAX_TEMPLATE_CHARS,
    analyse_chat_template,
)
from modelward.findings import Severity


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


# -- names built at render time -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COMPUTED_NAMES))
def test_names_built_at_render_time_are_high(name: str) -> None:
    issues = analyse_chat_template(COMPUTED_NAMES[name])
    dunder = [i for i in issues if i.rule_id == "MW-TEMPLATE-DUNDER"]
    assert dunder
    assert all(i.severity == Severity.HIGH for i in dunder)


@pytest.mark.parametrize("name", sorted(COMPUTED_NAMES))
def test_transformers_sandbox_blocks_what_is_still_reported(name: str) -> None:
    """transformers renders in an ImmutableSandboxedEnvironment, which stops each payload at
    render time; the template is an escape attempt all the same (and other renderers, such as
    older llama-cpp-python, used a plain Environment)."""
    import jinja2
    from transformers.utils.chat_template_utils import render_jinja_template

    with pytest.raises(jinja2.TemplateError):
        render_jinja_template(
            conversations=[[{"role": "user", "content": "hi"}]],
            chat_template=COMPUTED_NAMES[name],
        )


_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city."}},
                "required": ["city"],
            },
        },
    }
]
_CHAT = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi, how can I help?"},
    {"role": "user", "content": "What is the weather in Paris?"},
]
_TOOL_CHAT = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "abcdefghi",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "abcdefghi", "content": "22 degrees"},
]
_WITH_TOOLS = {"llama31_tools", "mistral_tools", "qwen_tools", "qwen25_tools", "qwen3"}
_WITH_TOOLS |= {"granite3_system_variable", "deepseek_r1"}


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_chat_templates_render_in_transformers(name: str) -> None:
    """The benign fixtures are working templates: transformers renders them as a model would."""
    from transformers.utils.chat_template_utils import render_jinja_template

    chats: list[tuple[list[dict[str, object]], list[dict[str, object]] | None]] = [(_CHAT, None)]
    if name in _WITH_TOOLS:
        chats.append((_TOOL_CHAT, _TOOLS))
    for chat, tools in chats:
        [text], _ = render_jinja_template(
            conversations=[chat],
            tools=tools,
            chat_template=BENIGN[name],
            add_generation_prompt=True,
            bos_token="<s>",
            eos_token="</s>",
        )
        assert "Paris" in text
        if tools and name != "deepseek_r1":
            assert "get_weather" in text


@pytest.mark.parametrize(
    "template",
    [
        "{% for m in messages %}{{ messages[loop.index0 + 1] }}{{ messages[loop.index0 - 1] }}"
        "{% endfor %}",
        "{% set ns = namespace(idx=0) %}{% for m in messages %}{% set ns.idx = ns.idx + 1 %}"
        "{{ messages[ns.idx - 1]['content'] }}{% endfor %}",
        "{% set system = messages[0]['content'] %}{% if system %}{{ system }}{% endif %}",
        "{% set ns = namespace(system='') %}{% set ns.system = 'x' %}{{ ns.system }}",
        "{% for g in groups %}{{ g.name }}{% endfor %}{% set config = {'a': 1} %}{{ config.a }}",
        "{% for key, value in tool.parameters.properties.items() %}{{ key }}{{ value[key] }}"
        "{% endfor %}",
        "{{ messages[messages|length - 1]['content'] }}{{ messages[-1].content[:10] }}",
    ],
)
def test_arithmetic_and_local_variables_raise_nothing(template: str) -> None:
    assert analyse_chat_template(template) == []


def test_unresolved_name_built_from_template_text_is_low() -> None:
    [issue] = analyse_chat_template("{{ message['tool_' ~ kind] }}")
    assert (issue.rule_id, issue.severity) == ("MW-TEMPLATE-COMPUTED-NAME", Severity.LOW)


def test_name_built_with_a_private_prefix_is_high() -> None:
    issues = analyse_chat_template("{{ messages|first|attr('_' ~ suffix) }}")
    assert ("MW-TEMPLATE-DUNDER", Severity.HIGH) in {(i.rule_id, i.severity) for i in issues}


def test_too_many_candidate_names_is_medium() -> None:
    letters = "['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']"
    template = (
        f"{{% for a in {letters} %}}{{% for b in {letters} %}}{{{{ x[a ~ b] }}}}"
        "{% endfor %}{% endfor %}"
    )
    [issue] = analyse_chat_template(template)
    assert (issue.rule_id, issue.severity) == ("MW-TEMPLATE-COMPUTED-NAME", Severity.MEDIUM)


def test_dangerous_name_among_too_many_candidates_is_still_found() -> None:
    pieces = [f"'p{i}'" for i in range(40)] + ["'__cla'"]
    template = f"{{% for a in [{', '.join(pieces)}] %}}{{% for b in ['ss__', 'x', 'y'] %}}"
    template += "{{ x[a ~ b] }}{% endfor %}{% endfor %}"
    issues = analyse_chat_template(template)
    assert any(i.rule_id == "MW-TEMPLATE-DUNDER" and "'__class__'" in i.message for i in issues)


def test_deep_expression_is_a_limit_not_a_pass() -> None:
    template = "{{ x[" + " + ".join(["'a'"] * 120) + "] }}"
    issues = analyse_chat_template(template)
    assert ("MW-TEMPLATE-COMPUTED-NAME", Severity.MEDIUM) in {
        (i.rule_id, i.severity) for i in issues
    }


def test_evaluation_is_bounded() -> None:
    """Growing strings, huge repeats and long chains finish quickly and stay bounded."""
    body = "".join(
        f"{{% set v{i} = v{i - 1} ~ v{i - 1} ~ ['a', 'b', 'c']|random %}}" for i in range(1, 400)
    )
    template = (
        "{% set v0 = 'x' * 100000000 %}{% set big = '%0999d' % 1 %}{% set p = 10 ** 100000 %}"
        + body
        + "{{ x[v399] }}{{ x[big ~ p] }}{{ x[range(10 ** 9)|join] }}"
    )
    start = time.monotonic()
    issues = analyse_chat_template(template)
    assert time.monotonic() - start < 20
    assert all(i.severity <= Severity.MEDIUM for i in issues)


_DUNDERS = ["__class__", "__globals__", "__init__", "__subclasses__", "__builtins__", "__mro__"]
_ATTRIBUTES = ["popen", "system", "func_globals", "mro", "os", "eval"]


def _splits(draw: st.DrawFn, name: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, len(name) - 1), min_size=1, max_size=4)))
    return [name[a:b] for a, b in zip([0, *cuts], [*cuts, len(name)], strict=True)]


@st.composite
def _built_name(draw: st.DrawFn, names: list[str]) -> tuple[str, str, str]:
    """A name, an expression that builds it from pieces, and `set` statements it needs."""
    name = draw(st.sampled_from(names))
    pieces = _splits(draw, name)
    quoted = [f"'{p}'" for p in pieces]
    how = draw(st.sampled_from(["tilde", "plus", "join", "format", "percent", "set", "reverse"]))
    prelude = ""
    if how == "tilde":
        expr = "(" + " ~ ".join(quoted) + ")"
    elif how == "plus":
        expr = "(" + " + ".join(quoted) + ")"
    elif how == "join":
        expr = "([" + ", ".join(quoted) + "]|join)"
    elif how == "format":
        expr = f"('{'{}' * len(pieces)}'.format({', '.join(quoted)}))"
    elif how == "percent":
        expr = f"('{'%s' * len(pieces)}'|format({', '.join(quoted)}))"
    elif how == "set":
        prelude = "".join(f"{{% set p{i} = {q} %}}" for i, q in enumerate(quoted))
        expr = "(" + " ~ ".join(f"p{i}" for i in range(len(pieces))) + ")"
    else:
        expr = "(" + " ~ ".join(f"'{p[::-1]}'" for p in reversed(pieces)) + ")|reverse"
    return name, expr, prelude


@settings(max_examples=150, deadline=None)
@given(_built_name(_DUNDERS), st.sampled_from(["subscript", "attr", "map"]))
def test_fuzz_split_dunder_names_are_found(built: tuple[str, str, str], use: str) -> None:
    name, expr, prelude = built
    body = {
        "subscript": f"{{{{ cycler[{expr}] }}}}",
        "attr": f"{{{{ messages|attr({expr}) }}}}",
        "map": f"{{{{ messages|map(attribute={expr})|list }}}}",
    }[use]
    issues = analyse_chat_template(prelude + body)
    assert any(
        i.rule_id == "MW-TEMPLATE-DUNDER"
        and i.severity == Severity.HIGH
        and repr(name) in i.message
        for i in issues
    ), issues


@settings(max_examples=80, deadline=None)
@given(_built_name(_ATTRIBUTES))
def test_fuzz_split_dangerous_attributes_are_found(built: tuple[str, str, str]) -> None:
    name, expr, prelude = built
    issues = analyse_chat_template(prelude + f"{{{{ messages|attr({expr}) }}}}")
    assert any(
        i.rule_id == "MW-TEMPLATE-DANGEROUS-NAME" and repr(name) in i.message for i in issues
    ), issues
