"""Static analysis of Jinja chat templates for server-side template injection.

Model files carry chat templates (GGUF `tokenizer.chat_template`, Hugging Face
`tokenizer_config.json`) that inference servers render with Jinja. A template
that walks from a Jinja global to Python internals
(`cycler.__init__.__globals__.os.popen(...)`) runs code on the server
(CVE-2024-34359). We parse the template into Jinja's AST, never render it, and
report the constructs such escapes need; real chat templates use none of them.

Names built at render time (`'__gl' ~ 'obals__'`, `['__', 'class', '__']|join`,
`dict(__class__=1)|first`, a loop over `['__init__']`) are evaluated symbolically
(`_jinja_eval`) and every subscript, attribute filter and `str.format` field is judged by
each name it can take. Integer arithmetic and data from the caller (`messages[loop.index0 + 1]`)
are not names; a string built from template text that cannot be resolved is a low finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from modelward._datafile import load_table, name_set
from modelward.analysis._jinja_eval import (
    MAX_CHOICES,
    Evaluator,
    GlobalRef,
    JDict,
    Value,
    format_fields,
)
from modelward.findings import Location, Severity
from modelward.formats.interface import ScanContext

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes

#: Templates longer than this are not analysed (real chat templates are a few KiB).
MAX_TEMPLATE_CHARS = 1_000_000
#: Characters of template text quoted as evidence.
EXCERPT_CHARS = 160

_DATA = "jinja_names.toml"
#: Expression kinds whose value is not computed (literals and variables are judged elsewhere).
_PLAIN_KINDS = frozenset({"Const", "TemplateData", "Name"})


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
    """Walks a parsed template and collects issues, one per construct, line and message."""

    def __init__(self, template: str) -> None:
        self.lines = template.splitlines() or [""]
        self.issues: dict[tuple[str, int, str], TemplateIssue] = {}
        #: Per line, the first dunder name found in a string built at render time, and where.
        self.built_dunders: dict[int, tuple[str, nodes.Node]] = {}
        self.escape_roots = name_set(_DATA, "escape_roots")
        self.host_roots = name_set(_DATA, "host_escape_roots")
        self.dangerous_names = name_set(_DATA, "dangerous_names")
        self.dangerous_keys = name_set(_DATA, "dangerous_keys")
        self.attribute_filters: dict[str, list[object]] = load_table(_DATA)["attribute_filters"]
        dunders = "|".join(sorted(name_set(_DATA, "dunder_names")))
        self.dunder_literal = re.compile(rf"__(?:{dunders})__")

    def interesting(self, text: str) -> bool:
        """Whether a computed string must be kept when there are too many to keep them all."""
        return (
            "_" in text
            or self.dunder_literal.search(text) is not None
            or any(p in self.dangerous_names or p in self.dangerous_keys for p in text.split("."))
        )

    def walk(self, tree: nodes.Template) -> list[TemplateIssue]:
        from jinja2 import nodes

        all_nodes = list(tree.find_all(nodes.Node))
        self.ev = Evaluator(
            all_nodes,
            jinja_globals=self.escape_roots,
            host_globals=self.host_roots,
            interesting=self.interesting,
        )
        computed_kinds: dict[type, bool] = {}
        for node in all_nodes:
            node_type = type(node)
            computed = computed_kinds.get(node_type)
            if computed is None:
                computed = (
                    issubclass(node_type, nodes.Expr) and node_type.__name__ not in _PLAIN_KINDS
                )
                computed_kinds[node_type] = computed
            if type(node) is nodes.Getattr:
                self._escape_root(node, node.node, node.attr)
                if not (
                    isinstance(node.node, nodes.Name)
                    and self.ev.is_namespace_field(node.node.name, node.attr)
                    and not node.attr.startswith("_")
                ):
                    self._name(node, node.attr, attribute=True, computed=False)
            elif type(node) is nodes.Getitem:
                self._getitem(node)
            elif type(node) is nodes.Filter:
                self._filter(node)
            elif type(node) is nodes.Call:
                self._format_call(node)
            elif (
                isinstance(node, nodes.Name)
                and node.name in self.dangerous_names
                and not self.ev.is_bound(node.name)
            ):
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
            if type(node) is nodes.Const and isinstance(node.value, str):
                found = self.dunder_literal.search(node.value)
                if found:
                    self._add(
                        "MW-TEMPLATE-DUNDER",
                        f"string literal holds {found.group()!r}, an attribute name built at"
                        " render time",
                        node,
                        found.group(),
                    )
            elif computed and isinstance(node, nodes.Expr):
                self._built_strings(node)
        dunder_lines = {line for rule, line, _ in self.issues if rule == "MW-TEMPLATE-DUNDER"}
        for line, (name, where) in self.built_dunders.items():
            if line not in dunder_lines:
                self._add(
                    "MW-TEMPLATE-DUNDER",
                    f"a string built at render time holds {name!r}, an attribute name",
                    where,
                    "",
                )
        if self.ev.limit_hit:
            self.issues[("limit", 0, "")] = TemplateIssue(
                "MW-TEMPLATE-COMPUTED-NAME",
                Severity.MEDIUM,
                f"names built at render time were not all computed ({self.ev.limit_hit} was"
                " reached); the ones past it are not checked",
                1,
                self.lines[0][:EXCERPT_CHARS],
            )
        return list(self.issues.values())

    def _getitem(self, node: nodes.Getitem) -> None:
        from jinja2 import nodes

        if isinstance(node.arg, nodes.Slice):
            return
        if isinstance(node.arg, nodes.Const):
            if isinstance(node.arg.value, str):
                self._escape_root(node, node.node, node.arg.value)
                self._name(node, node.arg.value, attribute=False, computed=False)
            return
        self._escape_root(node, node.node, "[...]")
        self._judge(node, self.ev.value(node.arg), attribute=False)

    def _filter(self, node: nodes.Filter) -> None:

        args: list[nodes.Expr] = list(node.args)
        kwargs: dict[str, nodes.Expr] = {str(kw.key): kw.value for kw in node.kwargs}
        if node.name == "attr":
            self._add(
                "MW-TEMPLATE-ATTR-FILTER",
                "`|attr(...)` looks attributes up by a computed name (sandbox escape)",
                node,
                "attr",
            )
            if args:
                self._judge(node, self.ev.value(args[0]), attribute=True, arg=args[0])
            return
        if node.name == "map" and args and "attr" in self.ev.value(args[0]).choices:
            self._add(
                "MW-TEMPLATE-ATTR-FILTER",
                "`|map('attr', ...)` looks attributes up by a computed name (sandbox escape)",
                node,
                "map",
            )
            if len(args) > 1:
                self._judge(node, self.ev.value(args[1]), attribute=True, arg=args[1])
            return
        spec = self.attribute_filters.get(node.name)
        if spec is None:
            return
        position, keyword = spec
        named = kwargs.get(str(keyword)) if keyword else None
        if named is None and isinstance(position, int) and 0 <= position < len(args):
            named = args[position]
        if named is not None:
            self._judge(node, self.ev.value(named), attribute=True, arg=named, dotted=True)

    def _format_call(self, node: nodes.Call) -> None:
        """`'{0.__class__}'.format(x)`: the fields of a format string read attributes."""
        from jinja2 import nodes

        method = node.node
        if not (isinstance(method, nodes.Getattr) and method.attr in ("format", "format_map")):
            return
        computed = not isinstance(method.node, nodes.Const)
        for text in self.ev.value(method.node).strings:
            try:
                fields = format_fields(text)
            except ValueError:
                continue
            for first, path in fields:
                if method.attr == "format_map" and first:
                    self._name(node, first, attribute=False, computed=computed)
                for part in path:
                    if not part.isdigit():
                        self._name(node, part, attribute=True, computed=computed)

    def _built_strings(self, node: nodes.Expr) -> None:
        """A string computed at render time that holds a dunder name (`'__cla' ~ 'ss__'`)."""
        for text in _texts(self.ev.value(node).choices):
            found = self.dunder_literal.search(text)
            if found:
                line = node.lineno if 1 <= node.lineno <= len(self.lines) else 1
                self.built_dunders.setdefault(line, (found.group(), node))

    def _judge(
        self,
        node: nodes.Node,
        value: Value,
        *,
        attribute: bool,
        arg: nodes.Node | None = None,
        dotted: bool = False,
    ) -> None:
        """Judge a subscript or attribute lookup by every name `value` can take."""
        from jinja2 import nodes

        if isinstance(arg, nodes.Const):
            for name in value.strings:
                for part in name.split(".") if dotted else [name]:
                    self._name(node, part, attribute=attribute, computed=False)
            return
        flagged: dict[str, set[str]] = {}
        for name in value.strings:
            for part in name.split(".") if dotted else [name]:
                rule = self._verdict(part, attribute=attribute)
                if rule:
                    flagged.setdefault(rule, set()).add(part)
        for rule, names in sorted(flagged.items()):
            shown = min(names, key=lambda n: (not self.dunder_literal.fullmatch(n), len(n), n))
            more = f"; one of {len(names)} such names it can take" if len(names) > 1 else ""
            how = f"{shown[:EXCERPT_CHARS]!r} (a name built at render time{more})"
            if rule == "MW-TEMPLATE-DUNDER":
                message = f"reads the private attribute {how}: Python internals, sandbox escape"
            else:
                message = f"reads {how}, which reaches the OS or evaluates code"
            self._add(rule, message, node, "")
        unknown = value.unknown
        if unknown is None or not unknown.built:
            return
        if unknown.prefix.startswith("_"):
            self._add(
                "MW-TEMPLATE-DUNDER",
                f"reads a name built at render time that starts with {unknown.prefix[:40]!r}"
                " (Python internals, sandbox escape)",
                node,
                "",
            )
        elif unknown.overflow:
            self._add(
                "MW-TEMPLATE-COMPUTED-NAME",
                f"reads a name built at render time from more than {MAX_CHOICES} candidate"
                " strings; not all were checked",
                node,
                "",
                Severity.MEDIUM,
            )
        else:
            self._add(
                "MW-TEMPLATE-COMPUTED-NAME",
                "reads a name built at render time from template text and data, which cannot"
                " be resolved",
                node,
                "",
                Severity.LOW,
            )

    def _verdict(self, name: str, *, attribute: bool) -> str | None:
        """The rule a subscript or attribute lookup of `name` breaks, if any."""
        if name.startswith("_"):
            return "MW-TEMPLATE-DUNDER"
        if name in (self.dangerous_names if attribute else self.dangerous_keys):
            return "MW-TEMPLATE-DANGEROUS-NAME"
        return None

    def _name(self, node: nodes.Node, name: str, *, attribute: bool, computed: bool) -> None:
        shown = name[:EXCERPT_CHARS]
        how = " (a name built at render time)" if computed else ""
        rule = self._verdict(name, attribute=attribute)
        if rule == "MW-TEMPLATE-DUNDER":
            self._add(
                rule,
                f"reads the private attribute {shown!r}{how} (Python internals, sandbox escape)",
                node,
                name,
            )
        elif rule:
            self._add(
                rule, f"reads {shown!r}{how}, which reaches the OS or evaluates code", node, name
            )

    def _escape_root(self, node: nodes.Node, target: nodes.Node, shown: str) -> None:
        roots = sorted(
            c.name
            for c in self.ev.value(target).choices
            if isinstance(c, GlobalRef) and c.name in self.escape_roots | self.host_roots
        )
        for root in roots:
            self._add(
                "MW-TEMPLATE-ESCAPE-ROOT",
                f"reads {shown[:EXCERPT_CHARS]!r} from the global {root!r}, a known escape"
                " route to Python internals",
                node,
                root,
            )

    def _add(
        self,
        rule_id: str,
        message: str,
        node: nodes.Node,
        needle: str,
        severity: Severity = Severity.HIGH,
    ) -> None:
        line = node.lineno if 1 <= node.lineno <= len(self.lines) else 1
        key = (rule_id, line, message)
        if key not in self.issues:
            text = self.lines[line - 1]
            start = max(text.find(needle) - EXCERPT_CHARS // 3, 0) if needle else 0
            excerpt = text[start : start + EXCERPT_CHARS]
            self.issues[key] = TemplateIssue(rule_id, severity, message, line, excerpt)


def _texts(choices: Iterable[object]) -> Iterator[str]:
    """The strings among `choices`, and those one level inside lists, tuples and dicts."""
    for choice in choices:
        if isinstance(choice, str):
            yield choice
        elif isinstance(choice, JDict):
            for key, value in choice:
                yield from (v for v in (key, value) if isinstance(v, str))
        elif isinstance(choice, tuple):
            yield from (v for v in choice if isinstance(v, str))
