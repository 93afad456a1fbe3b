"""Static analysis of Jinja chat templates for server-side template injection.

Model files carry chat templates (GGUF `tokenizer.chat_template`, Hugging Face
`tokenizer_config.json`) that inference servers render with Jinja. A template
that walks from a Jinja global to Python internals
(`cycler.__init__.__globals__.os.popen(...)`) runs code on the server
(CVE-2024-34359). We parse the template into Jinja's AST, never render it, and
report the constructs such escapes need; real chat templates use none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from modelward.findings import Location, Severity
from modelward.formats._datafile import name_set
from modelward.formats.base import ScanContext

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes

#: Templates longer than this are not analysed (real chat templates are a few KiB).
MAX_TEMPLATE_CHARS = 1_000_000
#: Characters of template text quoted as evidence.
EXCERPT_CHARS = 160

_DATA = "jinja_names.toml"


@dataclass(frozen=True)
class TemplateIssue:
    """One suspicious construct in a template, with the line it is on."""

    rule_id: str
    severity: Severity
    message: str
    line: int
    excerpt: str


def analyse_chat_template(template: str) -> list[TemplateIssue]:
    """Find template-injection constructs in `template` without rendering it.

    A template that cannot be parsed is itself an issue (fail closed): servers
    may still render the parts they accept.
    """
    if len(template) > MAX_TEMPLATE_CHARS:
        return [
            TemplateIssue(
                "MW-TEMPLATE-UNPARSED",
                Severity.MEDIUM,
                f"template of {len(template)} characters is over the {MAX_TEMPLATE_CHARS}"
                " analysed; not checked",
                1,
                template[:EXCERPT_CHARS],
            )
        ]
    import jinja2

    try:
        tree = _environment().parse(template)
        return _Walker(template).walk(tree)
    except jinja2.TemplateSyntaxError as exc:
        problem, line = f"is not valid Jinja ({exc.message})", exc.lineno
    except RecursionError:
        problem, line = "nests too deeply to analyse", 1
    lines = template.splitlines() or [""]
    return [
        TemplateIssue(
            "MW-TEMPLATE-UNPARSED",
            Severity.MEDIUM,
            f"template {problem}; not checked",
            line,
            lines[min(max(line, 1), len(lines)) - 1][:EXCERPT_CHARS],
        )
    ]


def scan_chat_template(template: str, location: Location, ctx: ScanContext, source: str) -> None:
    """Analyse a template found in a model file and report its issues at `location`.

    `source` names where it came from (`tokenizer.chat_template`, a JSON key path).
    """
    for issue in analyse_chat_template(template):
        ctx.report(
            issue.rule_id,
            issue.severity,
            location,
            f"{source} line {issue.line}: {issue.message}",
            evidence=issue.excerpt,
        )


@cache
def _environment() -> jinja2.Environment:
    """A Jinja environment that accepts what chat-template renderers accept."""
    import jinja2
    from jinja2.ext import Extension
    from jinja2.parser import Parser

    class GenerationTag(Extension):
        """`{% generation %}...{% endgeneration %}`, which Hugging Face templates may use."""

        tags = {"generation"}  # noqa: RUF012 (declared so by jinja2.ext.Extension)

        def parse(self, parser: Parser) -> list[nodes.Node]:
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    return jinja2.Environment(extensions=["jinja2.ext.loopcontrols", GenerationTag])


class _Walker:
    """Walks a parsed template and collects issues, one per construct and line."""

    def __init__(self, template: str) -> None:
        self.lines = template.splitlines() or [""]
        self.issues: dict[tuple[str, int, str], TemplateIssue] = {}
        self.escape_roots = name_set(_DATA, "escape_roots")
        self.dangerous_names = name_set(_DATA, "dangerous_names")
        self.dangerous_keys = name_set(_DATA, "dangerous_keys")
        dunders = "|".join(sorted(name_set(_DATA, "dunder_names")))
        self.dunder_literal = re.compile(rf"__(?:{dunders})__")

    def walk(self, tree: nodes.Template) -> list[TemplateIssue]:
        from jinja2 import nodes

        for node in tree.find_all(nodes.Node):
            if isinstance(node, nodes.Getattr):
                self._member(node, node.node, node.attr, is_attribute=True)
            elif isinstance(node, nodes.Getitem):
                key = node.arg.value if isinstance(node.arg, nodes.Const) else None
                if isinstance(key, str):
                    self._member(node, node.node, key, is_attribute=False)
                elif isinstance(node.arg, nodes.Concat | nodes.Add | nodes.Mul | nodes.Filter):
                    self._add(
                        "MW-TEMPLATE-COMPUTED-NAME",
                        "subscript key is a string built at render time (hides the name read)",
                        node,
                        "[",
                    )
            elif isinstance(node, nodes.Filter) and node.name == "attr":
                self._add(
                    "MW-TEMPLATE-ATTR-FILTER",
                    "`|attr(...)` looks attributes up by a computed name (sandbox escape)",
                    node,
                    "attr",
                )
            elif isinstance(node, nodes.Name) and node.name in self.dangerous_names:
                self._add(
                    "MW-TEMPLATE-DANGEROUS-NAME",
                    f"uses the name {node.name!r}, which reaches the OS or evaluates code",
                    node,
                    node.name,
                )
            elif isinstance(node, nodes.Import | nodes.FromImport | nodes.Include | nodes.Extends):
                kind = type(node).__name__.lower()
                self._add(
                    "MW-TEMPLATE-IMPORT",
                    f"`{kind}` loads another template; chat templates never need one",
                    node,
                    kind.replace("fromimport", "from"),
                )
            elif isinstance(node, nodes.Const) and isinstance(node.value, str):
                found = self.dunder_literal.search(node.value)
                if found:
                    self._add(
                        "MW-TEMPLATE-DUNDER",
                        f"string literal holds {found.group()!r}, an attribute name built at"
                        " render time",
                        node,
                        found.group(),
                    )
        return list(self.issues.values())

    def _member(
        self, node: nodes.Node, target: nodes.Node, name: str, *, is_attribute: bool
    ) -> None:
        from jinja2 import nodes

        shown = name[:EXCERPT_CHARS]
        if name.startswith("_"):
            self._add(
                "MW-TEMPLATE-DUNDER",
                f"reads the private attribute {shown!r} (Python internals, sandbox escape)",
                node,
                name,
            )
        elif name in (self.dangerous_names if is_attribute else self.dangerous_keys):
            self._add(
                "MW-TEMPLATE-DANGEROUS-NAME",
                f"reads {shown!r}, which reaches the OS or evaluates code",
                node,
                name,
            )
        if isinstance(target, nodes.Name) and target.name in self.escape_roots:
            self._add(
                "MW-TEMPLATE-ESCAPE-ROOT",
                f"reads {shown!r} from the global {target.name!r}, a known escape route to"
                " Python internals",
                node,
                target.name,
            )

    def _add(self, rule_id: str, message: str, node: nodes.Node, needle: str) -> None:
        line = node.lineno if 1 <= node.lineno <= len(self.lines) else 1
        key = (rule_id, line, message)
        if key not in self.issues:
            text = self.lines[line - 1]
            start = max(text.find(needle) - EXCERPT_CHARS // 3, 0)
            excerpt = text[start : start + EXCERPT_CHARS]
            self.issues[key] = TemplateIssue(rule_id, Severity.HIGH, message, line, excerpt)
