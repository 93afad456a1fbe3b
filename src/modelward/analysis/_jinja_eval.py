"""Bounded symbolic evaluation of Jinja expressions: which constant values a name can take.

A chat template can hide an attribute name from a literal-only check by building it at
render time (`'__gl' ~ 'obals__'`, `['__', 'class', '__']|join`, `'__ssalc__'|reverse`,
`dict(__class__=1)|first`, a loop over `['__init__']`). This module computes, for any
expression of a parsed template, the set of concrete values it may take, without rendering
anything: constants are folded through the string, list and number operations Jinja offers,
and variables (`set`, `for`, `with`, macro parameters, namespace fields) are the union of
everything assigned to them anywhere (flow-insensitive, iterated to a bounded fixed point).

Every result is bounded: at most `MAX_CHOICES` concrete values per expression (the ones a
caller marks as interesting are kept past the cap), strings of at most `MAX_STRING`
characters, sequences of at most `MAX_ITEMS`, integers under `MAX_INT`, a total work budget
per template. What cannot be known is described by `Unknown`: whether template constants
went into it (a string *built* by the template, as opposed to data from the caller), and
the prefix and suffix every such string is known to have.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import nodes

#: Concrete values one expression may take before the rest is summarised as unknown.
MAX_CHOICES = 64
#: Longest string (and `str()` of anything) that is computed.
MAX_STRING = 4096
#: Longest list, tuple or dict that is computed.
MAX_ITEMS = 256
#: Largest integer magnitude that is computed.
MAX_INT = 10**18
#: Passes over the template's assignments before variables still growing are widened.
MAX_ROUNDS = 8
#: Deepest expression nesting evaluated.
MAX_DEPTH = 80
#: Units of work (one per expression and concrete operation, one per 64 result characters)
#: per template: about a second. Real chat templates use a few thousand.
WORK_BUDGET = 60_000
#: Characters of a known prefix or suffix of an unknown string that are tracked.
MAX_AFFIX = 64


class JList(tuple[object, ...]):
    """A Jinja list (a list literal or a filter's list result); a plain tuple is a Jinja tuple."""

    __slots__ = ()


class JDict(tuple[tuple[object, object], ...]):
    """A Jinja dict as its (key, value) pairs in insertion order, keys unique."""

    __slots__ = ()

    def keys(self) -> JList:
        return JList(k for k, _ in self)

    def get(self, key: object) -> object:
        for k, v in self:
            if k == key:
                return v
        raise _Unknowable


@dataclass(frozen=True)
class GlobalRef:
    """A global object of the renderer (`cycler`, `dict`, `config`), not a constant."""

    name: str


@dataclass(frozen=True)
class Unknown:
    """What is known of the values an expression may take beyond its concrete ones."""

    #: The value is a string assembled from template constants (not data from the caller).
    built: bool = False
    #: There were more than `MAX_CHOICES` concrete values; the uninteresting ones were dropped.
    overflow: bool = False
    #: A prefix and a suffix every such built string has.
    prefix: str = ""
    suffix: str = ""

    def join(self, other: Unknown | None) -> Unknown:
        if other is None:
            return self
        if self.built and other.built:
            prefix = _common_prefix((self.prefix, other.prefix))
            suffix = _common_suffix((self.suffix, other.suffix))
        else:
            built = self if self.built else other
            prefix, suffix = (built.prefix, built.suffix) if built.built else ("", "")
        return Unknown(self.built or other.built, self.overflow or other.overflow, prefix, suffix)


@dataclass(frozen=True)
class Value:
    """The concrete values an expression may take, and what is known of the others."""

    choices: frozenset[object] = frozenset()
    unknown: Unknown | None = None

    @property
    def strings(self) -> Iterator[str]:
        return (c for c in self.choices if isinstance(c, str))

    def union(self, other: Value) -> Value:
        if other is self or (not other.choices and other.unknown is None):
            return self
        unknown = other.unknown if self.unknown is None else self.unknown.join(other.unknown)
        return Value(self.choices | other.choices, unknown)


EMPTY = Value()
ANY = Value(unknown=Unknown())


def built(prefix: str = "", suffix: str = "", *, overflow: bool = False) -> Value:
    """An unknown string assembled from template constants."""
    return Value(unknown=Unknown(True, overflow, prefix, suffix))


class _Unknowable(Exception):
    """This operation on these concrete values is not computed."""


class _Exhausted(Exception):
    """The work budget of the template is spent."""


#: What computing one operation on concrete values may raise: the result is then unknown.
_FAILURES = (
    _Unknowable, TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError,
    ZeroDivisionError, RecursionError,
)  # fmt: skip


def _common_prefix(texts: Iterable[str]) -> str:
    """The common prefix of `texts`, of at most `MAX_AFFIX` characters."""
    items = [t[:MAX_AFFIX] for t in texts]
    if not items:
        return ""
    first, last = min(items), max(items)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _common_suffix(texts: Iterable[str]) -> str:
    """The common suffix of `texts`, of at most `MAX_AFFIX` characters."""
    return _common_prefix(t[: -MAX_AFFIX - 1 : -1] for t in texts)[::-1]


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float)


def _to_str(value: object) -> str:
    """`str()` as Jinja's `~` and `|string` apply it, for values whose text is known."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise _Unknowable


def _check_str(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise _Unknowable
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise _Unknowable
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unknowable
    if isinstance(value, tuple) and len(value) > MAX_ITEMS:
        raise _Unknowable
    return value


def _as_items(value: object) -> tuple[object, ...]:
    """What iterating over `value` yields in Jinja (characters, items, dict keys)."""
    if isinstance(value, JDict):
        return tuple(value.keys())
    if isinstance(value, str | tuple):
        return tuple(value)
    raise _Unknowable


def _int_arg(value: object, *, limit: int = MAX_STRING) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > limit:
        raise _Unknowable
    return value


_PERCENT = re.compile(
    r"%(?:\((?P<key>[^()]{0,64})\))?[-+ #0]{0,5}\d{0,3}(?:\.\d{0,3})?[diouxXeEfFgGcrsa%]"
)
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?#?0?\d{0,3},?(?:\.\d{0,3})?[bcdeEfFgGnosxX%]?")
_FIELD = re.compile(r"\d{0,3}|[A-Za-z_]\w{0,63}")


def percent_format(template: object, args: object) -> str:
    """`template % args` for `%`-specifiers of bounded width only (no `*`)."""
    if not isinstance(template, str):
        raise _Unknowable
    pos = template.find("%")
    while pos >= 0:
        match = _PERCENT.match(template, pos)
        if match is None:
            raise _Unknowable
        pos = template.find("%", match.end())
    if isinstance(args, JDict):
        mapping = dict(args)
        if not all(_is_scalar(v) for v in mapping.values()):
            raise _Unknowable
        operand: object = mapping
    elif type(args) is tuple:
        if not all(_is_scalar(a) for a in args):
            raise _Unknowable
        operand = args
    elif _is_scalar(args):
        operand = args
    else:
        raise _Unknowable
    try:
        return template % operand
    except (TypeError, ValueError, KeyError, OverflowError, IndexError) as exc:
        raise _Unknowable from exc


def format_fields(template: str) -> list[tuple[str, list[str]]]:
    """The replacement fields of a `str.format` template: (first name, attribute/key path).

    `'{0.__class__.mro}'` gives `[('0', ['__class__', 'mro'])]`. Raises `_Unknowable` when
    the template is not a valid format string.
    """
    out: list[tuple[str, list[str]]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _Unknowable from exc
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        first, rest = _split_field(name)
        out.append((first, rest))
        if spec and "{" in spec:
            for inner, path in format_fields(spec):
                out.append((inner, path))
    return out


def _split_field(name: str) -> tuple[str, list[str]]:
    match = re.match(r"[^.\[]*", name)
    first = match.group() if match else ""
    rest = re.findall(r"\.([^.\[]*)|\[([^\]]*)\]", name[len(first) :])
    return first, [a or b for a, b in rest]


def str_format(template: object, args: Sequence[object], kwargs: dict[str, object]) -> str:
    """`template.format(*args, **kwargs)` for plain fields and bounded specs only."""
    if not isinstance(template, str):
        raise _Unknowable
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _Unknowable from exc
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _FIELD.fullmatch(name) or (spec and not _SPEC.fullmatch(spec)):
            raise _Unknowable
        if conversion not in (None, "r", "s", "a"):
            raise _Unknowable
    if not all(_is_scalar(a) for a in [*args, *kwargs.values()]):
        raise _Unknowable
    try:
        return template.format(*args, **kwargs)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise _Unknowable from exc


_STR_METHODS: dict[str, Callable[..., object]] = {
    name: getattr(str, name)
    for name in [
        "upper", "lower", "title", "capitalize", "swapcase", "casefold", "strip", "lstrip",
        "rstrip", "split", "rsplit", "removeprefix", "removesuffix", "startswith", "endswith",
        "isdigit", "isalpha", "isupper", "islower",
    ]
}  # fmt: skip
_STR_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill"}


def _str_method(receiver: str, method: str, args: list[object], kw: dict[str, object]) -> object:
    if method == "format":
        return str_format(receiver, args, kw)
    if kw:
        raise _Unknowable
    if method == "replace":
        return _replace(receiver, *args)
    if method == "join":
        if len(args) != 1:
            raise _Unknowable
        return receiver.join(_to_str(i) for i in _as_items(args[0]))
    if method in _STR_WIDTH_METHODS:
        if not args:
            raise _Unknowable
        return getattr(receiver, method)(_int_arg(args[0]), *args[1:])
    func = _STR_METHODS.get(method)
    if func is None:
        raise _Unknowable
    try:
        result = func(receiver, *args)
    except (TypeError, ValueError) as exc:
        raise _Unknowable from exc
    return JList(result) if isinstance(result, list) else result


def _replace(text: object, old: object = None, new: object = None, count: object = -1) -> str:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        raise _Unknowable
    count = -1 if count is None else _int_arg(count, limit=MAX_INT)
    hits = text.count(old) if old else len(text) + 1
    if count >= 0:
        hits = min(hits, count)
    if len(text) + hits * len(new) > MAX_STRING:
        raise _Unknowable
    return text.replace(old, new, count)


def _first(value: object) -> object:
    items = _as_items(value)
    if not items:
        raise _Unknowable
    return items[0]


def _last(value: object) -> object:
    items = _as_items(value)
    if not items:
        raise _Unknowable
    return items[-1]


def _reverse(value: object) -> object:
    if isinstance(value, str):
        return value[::-1]
    return JList(reversed(_as_items(value)))


def _join(value: object, sep: object = "", attribute: object = None) -> str:
    if attribute is not None or not isinstance(sep, str):
        raise _Unknowable
    return sep.join(_to_str(i) for i in _as_items(value))


def _trim(value: object, chars: object = None) -> str:
    if not isinstance(value, str) or not (chars is None or isinstance(chars, str)):
        raise _Unknowable
    return value.strip(chars)


def _text(func: Callable[[str], str]) -> Callable[..., object]:
    def apply(value: object) -> object:
        return func(_to_str(value))

    return apply


def _sort(value: object, reverse: object = False, case_sensitive: object = False) -> JList:
    items = _as_items(value)
    try:
        ordered = sorted(items, key=lambda i: i if case_sensitive else _fold(i))  # type: ignore[arg-type, return-value]
    except TypeError as exc:
        raise _Unknowable from exc
    return JList(reversed(ordered) if reverse else ordered)


def _fold(item: object) -> object:
    return item.lower() if isinstance(item, str) else item


def _unique(value: object) -> JList:
    seen: list[object] = []
    for item in _as_items(value):
        if _fold(item) not in [_fold(s) for s in seen]:
            seen.append(item)
    return JList(seen)


def _minmax(func: Callable[..., object]) -> Callable[..., object]:
    def apply(value: object) -> object:
        items = _as_items(value)
        if not items:
            raise _Unknowable
        try:
            return func(items, key=_fold)
        except TypeError as exc:
            raise _Unknowable from exc

    return apply


def _items(value: object) -> JList:
    if not isinstance(value, JDict):
        raise _Unknowable
    return JList(value)


def _tojson(value: object, *args: object, **kwargs: object) -> str:
    if not (_is_scalar(value) and not isinstance(value, float)):
        raise _Unknowable
    return json.dumps(value)


def _number(kind: type) -> Callable[..., object]:
    def apply(value: object, default: object = 0, *_: object) -> object:
        if isinstance(value, str) and len(value) > 64:
            raise _Unknowable
        try:
            return kind(value)
        except (TypeError, ValueError, OverflowError):
            return default

    return apply


def _length(value: object) -> int:
    return len(_as_items(value))


#: Filters computed on concrete values: name -> function(value, *args, **kwargs).
FILTERS: dict[str, Callable[..., object]] = {
    "lower": _text(str.lower),
    "upper": _text(str.upper),
    "capitalize": _text(str.capitalize),
    "title": _text(str.title),
    "string": _to_str,
    "safe": _text(str),
    "trim": _trim,
    "replace": _replace,
    "reverse": _reverse,
    "list": lambda v: JList(_as_items(v)),
    "first": _first,
    "last": _last,
    "join": _join,
    "format": lambda v, *a, **k: percent_format(v, JDict(k.items()) if k else tuple(a)),
    "sort": _sort,
    "unique": _unique,
    "min": _minmax(min),
    "max": _minmax(max),
    "items": _items,
    "dictsort": lambda v: _sort(_items(v)),
    "tojson": _tojson,
    "int": _number(int),
    "float": _number(float),
    "length": _length,
    "count": _length,
}
#: Filters whose result, from a string, is a string not computed here.
_STRING_FILTERS = {
    "center", "indent", "truncate", "wordwrap", "striptags", "urlencode", "urlize", "escape",
    "e", "forceescape", "xmlattr", "pprint", "filesizeformat",
}  # fmt: skip


def _is_text(value: object) -> bool:
    return isinstance(value, str)


@dataclass
class _Binding:
    """One source of a variable's values."""

    kind: str  # "expr", "iter", "block", "any"
    node: nodes.Node | None = None
    #: Positions to unpack (`set a, b = ...`, `for k, v in ...`): (index, width) per level.
    unpack: tuple[tuple[int, int], ...] = ()
    filter: nodes.Filter | None = None
    body: list[nodes.Node] = field(default_factory=list)


class Evaluator:
    """The values of a parsed template's expressions, computed once per template.

    `all_nodes` is every node of the template (`list(tree.find_all(nodes.Node))`).
    """

    def __init__(
        self,
        all_nodes: Sequence[nodes.Node],
        *,
        jinja_globals: frozenset[str],
        host_globals: frozenset[str],
        interesting: Callable[[str], bool],
    ) -> None:
        from jinja2 import nodes as n

        self._n = n
        self.jinja_globals = jinja_globals
        self.host_globals = host_globals
        self.interesting = interesting
        self.bindings: dict[str, list[_Binding]] = {}
        self.macros: dict[str, nodes.Macro] = {}
        self.namespaces: set[str] = set()
        self.budget = WORK_BUDGET
        #: Why evaluation stopped early (work budget, nesting), if it did.
        self.limit_hit: str | None = None
        self._collect(all_nodes)
        self.env: dict[str, Value] = dict.fromkeys(self.bindings, EMPTY)
        self._memo: dict[int, Value] = {}
        self._active_macros: set[str] = set()
        self._solve()

    # -- public -------------------------------------------------------------------------------

    def value(self, node: nodes.Node) -> Value:
        """The values `node` may take (memoised; ANY once the work budget is spent)."""
        try:
            return self._eval(node, 0)
        except _Exhausted:
            return ANY

    def is_bound(self, name: str) -> bool:
        """Whether the template itself assigns `name` (a variable, not a renderer global)."""
        return name in self.bindings or name in self.macros

    def is_namespace_field(self, name: str, attr: str) -> bool:
        """Whether `name.attr` is a field of a namespace the template creates."""
        return f"{name}.{attr}" in self.bindings

    # -- collecting assignments ---------------------------------------------------------------

    def _collect(self, all_nodes: Sequence[nodes.Node]) -> None:
        n = self._n
        calls: dict[str, list[nodes.Call]] = {}
        macro_names = {m.name for m in all_nodes if isinstance(m, n.Macro)}
        wanted = {n.Assign, n.AssignBlock, n.For, n.With, n.Macro, n.CallBlock, n.Import}
        wanted |= {n.FromImport, n.Call}
        for node in all_nodes:
            if type(node) not in wanted:
                continue
            if isinstance(node, n.Assign):
                self._bind(node.target, _Binding("expr", node.node))
                if (
                    isinstance(node.target, n.Name)
                    and isinstance(node.node, n.Call)
                    and isinstance(node.node.node, n.Name)
                    and node.node.node.name == "namespace"
                ):
                    self.namespaces.add(node.target.name)
                    for kw in node.node.kwargs:
                        self._add(f"{node.target.name}.{kw.key}", _Binding("expr", kw.value))
            elif isinstance(node, n.AssignBlock):
                self._bind(node.target, _Binding("block", filter=node.filter, body=node.body))
            elif isinstance(node, n.For):
                self._bind(node.target, _Binding("iter", node.iter))
            elif isinstance(node, n.With):
                for target, value in zip(node.targets, node.values, strict=False):
                    self._bind(target, _Binding("expr", value))
            elif isinstance(node, n.Macro):
                self.macros[node.name] = node
            elif isinstance(node, n.CallBlock):
                for arg in node.args:
                    self._bind(arg, _Binding("any"))
            elif isinstance(node, n.Import | n.FromImport):
                names = [node.target] if isinstance(node, n.Import) else node.names
                for item in names:
                    alias = item if isinstance(item, str) else item[-1]
                    self._add(alias, _Binding("any"))
            elif (
                isinstance(node, n.Call)
                and isinstance(node.node, n.Name)
                and node.node.name in macro_names
            ):
                calls.setdefault(node.node.name, []).append(node)
        for name, macro in self.macros.items():
            self._bind_macro(macro, calls.get(name, []))

    def _bind_macro(self, macro: nodes.Macro, calls: list[nodes.Call]) -> None:
        params = [a.name for a in macro.args]
        first_default = len(params) - len(macro.defaults)
        defaults = dict(zip(params[first_default:], macro.defaults, strict=True))
        for special in ("varargs", "kwargs", "caller"):
            self._add(special, _Binding("any"))
        for index, param in enumerate(params):
            sources: list[_Binding] = []
            for call in calls:
                if call.dyn_args is not None or call.dyn_kwargs is not None:
                    sources.append(_Binding("any"))
                elif index < len(call.args):
                    sources.append(_Binding("expr", call.args[index]))
                else:
                    given = [kw.value for kw in call.kwargs if kw.key == param]
                    if given:
                        sources.append(_Binding("expr", given[0]))
                    elif param in defaults:
                        sources.append(_Binding("expr", defaults[param]))
                    else:
                        sources.append(_Binding("any"))
            if not calls:
                sources.append(_Binding("any"))
                if param in defaults:
                    sources.append(_Binding("expr", defaults[param]))
            for source in sources:
                self._add(param, source)

    def _bind(self, target: nodes.Node, binding: _Binding) -> None:
        n = self._n
        if isinstance(target, n.Name):
            self._add(target.name, binding)
        elif isinstance(target, n.NSRef):
            self._add(f"{target.name}.{target.attr}", binding)
        elif isinstance(target, n.Tuple):
            width = len(target.items)
            for index, item in enumerate(target.items):
                self._bind(
                    item,
                    _Binding(
                        binding.kind,
                        binding.node,
                        (*binding.unpack, (index, width)),
                        binding.filter,
                        binding.body,
                    ),
                )

    def _add(self, key: str, binding: _Binding) -> None:
        self.bindings.setdefault(key, []).append(binding)

    # -- fixed point --------------------------------------------------------------------------

    def _solve(self) -> None:
        changed: set[str] = set()
        for _ in range(MAX_ROUNDS):
            changed.clear()
            self._memo.clear()
            for key, sources in self.bindings.items():
                value = self.env[key]
                for source in sources:
                    try:
                        value = self._capped(value.union(self._binding_value(source)))
                    except _Exhausted:
                        self._memo.clear()
                        self.env = dict.fromkeys(self.bindings, ANY)
                        return
                if value != self.env[key]:
                    self.env[key] = value
                    changed.add(key)
                    self._memo.clear()
            if not changed:
                break
        for key in changed:
            value = self.env[key]
            strings = _has_text(value) or bool(value.unknown and value.unknown.built)
            self.env[key] = value.union(built(overflow=True) if strings else ANY)
        self._memo.clear()

    def _binding_value(self, binding: _Binding) -> Value:
        if binding.kind == "any":
            return ANY
        if binding.kind == "block":
            value = self._output(binding.body, 0)
            if binding.filter is not None:
                value = self._filter(binding.filter, value, 0)
        else:
            assert binding.node is not None
            if binding.kind == "iter" and isinstance(binding.node, self._n.List | self._n.Tuple):
                value = EMPTY
                for item in binding.node.items:
                    value = self._capped(value.union(self._eval(item, 0)))
            else:
                value = self._eval(binding.node, 0)
                if binding.kind == "iter":
                    value = self._map(value, lambda v: JList(_as_items(v)), elements=True)
        for index, width in binding.unpack:
            value = self._map(value, functools.partial(_unpack, index=index, width=width))
        return value

    # -- evaluation ---------------------------------------------------------------------------

    def _spend(self, units: int = 1) -> None:
        self.budget -= units
        if self.budget < 0:
            self.limit_hit = "the work budget for computed names"
            raise _Exhausted

    def _eval(self, node: nodes.Node, depth: int) -> Value:
        key = id(node)
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        if depth > MAX_DEPTH:
            self.limit_hit = f"expressions nested over {MAX_DEPTH} deep"
            return ANY
        self._spend()
        value = self._capped(self._compute(node, depth + 1))
        self._memo[key] = value
        return value

    def _compute(self, node: nodes.Node, depth: int) -> Value:
        n = self._n
        if isinstance(node, n.Const):
            return self._const(node.value)
        if isinstance(node, n.TemplateData):
            return self._const(node.data)
        if isinstance(node, n.Name):
            return self._name(node.name)
        if isinstance(node, n.Concat):
            value = Value(frozenset({""}))
            for item in node.nodes:
                value = self._concat(value, self._eval(item, depth))
            return value
        if isinstance(node, n.And | n.Or):
            return self._eval(node.left, depth).union(self._eval(node.right, depth))
        if isinstance(node, n.BinExpr):
            return self._binary(node, depth)
        if isinstance(node, n.Neg | n.Pos):
            sign = -1 if isinstance(node, n.Neg) else 1
            return self._map(self._eval(node.node, depth), lambda v: _number_op(v, sign))
        if isinstance(node, n.Not | n.Compare | n.Test):
            return Value(frozenset({True, False}))
        if isinstance(node, n.CondExpr):
            other = ANY if node.expr2 is None else self._eval(node.expr2, depth)
            return self._eval(node.expr1, depth).union(other)
        if isinstance(node, n.List | n.Tuple):
            kind: Callable[[Iterable[object]], object] = (
                JList if isinstance(node, n.List) else tuple
            )
            return self._product([self._eval(i, depth) for i in node.items], kind)
        if isinstance(node, n.Dict):
            keys = [self._eval(p.key, depth) for p in node.items]
            values = [self._eval(p.value, depth) for p in node.items]
            return self._product([*keys, *values], lambda xs: _make_dict(xs, len(keys)))
        if isinstance(node, n.Getitem):
            return self._getitem(node, depth)
        if isinstance(node, n.Getattr):
            if isinstance(node.node, n.Name) and self.is_namespace_field(node.node.name, node.attr):
                return self.env[f"{node.node.name}.{node.attr}"]
            return self._map(self._eval(node.node, depth), lambda v: _getattr(v, node.attr))
        if isinstance(node, n.Filter):
            value = ANY if node.node is None else self._eval(node.node, depth)
            return self._filter(node, value, depth)
        if isinstance(node, n.Call):
            return self._call(node, depth)
        if isinstance(node, n.MarkSafe | n.MarkSafeIfAutoescape):
            return self._eval(node.expr, depth)
        return ANY

    def _const(self, value: object) -> Value:
        if isinstance(value, str) and len(value) > MAX_STRING:
            return built(value[:64], value[-64:])
        if _is_scalar(value):
            return Value(frozenset({value}))
        return ANY

    def _name(self, name: str) -> Value:
        value = self.env.get(name)
        if name in self.macros:
            return Value(frozenset({GlobalRef(f"macro:{name}")}))
        if value is None:
            if name in self.jinja_globals or name in self.host_globals:
                return Value(frozenset({GlobalRef(name)}))
            return ANY
        if name in self.jinja_globals:
            return value.union(Value(frozenset({GlobalRef(name)})))
        return value

    def _binary(self, node: nodes.BinExpr, depth: int) -> Value:
        left, right = self._eval(node.left, depth), self._eval(node.right, depth)
        op = node.operator
        if (
            op == "+"
            and _stringy(left)
            and _stringy(right)
            and (_has_text(left) or _has_text(right))
        ):
            return self._concat(left, right)
        func = _BINARY.get(op)
        if func is None:
            return ANY
        return self._map2(left, right, func, text=op in "+*%")

    def _getitem(self, node: nodes.Getitem, depth: int) -> Value:
        n = self._n
        target = self._eval(node.node, depth)
        if isinstance(node.arg, n.Slice):
            parts = [
                Value(frozenset({None})) if p is None else self._eval(p, depth)
                for p in (node.arg.start, node.arg.stop, node.arg.step)
            ]
            return self._product([target, *parts], _slice, text=True)
        return self._map2(target, self._eval(node.arg, depth), _getitem, text=True)

    def _filter(self, node: nodes.Filter, value: Value, depth: int) -> Value:
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return self._unknown_from(value)
        args = [self._eval(a, depth) for a in node.args]
        kwargs = {str(kw.key): self._eval(kw.value, depth) for kw in node.kwargs}
        name = node.name
        if name in ("default", "d"):
            return value.union(args[0] if args else Value(frozenset({""})))
        if name == "random":
            return self._map(value, lambda v: JList(_as_items(v)), elements=True)
        if name == "map" and args and not kwargs:
            return self._map_filter(value, args, depth)
        func = FILTERS.get(name)
        if func is None:
            return self._unknown_from(value)
        keys = list(kwargs)

        def apply(xs: Sequence[object]) -> object:
            named = dict(zip(keys, xs[1 + len(args) :], strict=True))
            return func(xs[0], *xs[1 : 1 + len(args)], **named)

        return self._product(
            [value, *args, *kwargs.values()],
            apply,
            text=True,
            affixes=name in ("lower", "upper", "string", "safe", "reverse"),
            reverse=name == "reverse",
        )

    def _map_filter(self, value: Value, args: list[Value], depth: int) -> Value:
        names = [a for a in args[0].choices if isinstance(a, str)]
        if len(names) != 1 or args[0].unknown is not None or names[0] not in FILTERS:
            return self._unknown_from(value)
        func = FILTERS[names[0]]

        def apply(xs: Sequence[object]) -> object:
            return JList(func(item, *xs[1:]) for item in _as_items(xs[0]))

        return self._product([value, *args[1:]], apply, text=True)

    def _call(self, node: nodes.Call, depth: int) -> Value:
        n = self._n
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return ANY
        callee = node.node
        if isinstance(callee, n.Name) and callee.name in self.macros:
            return self._macro_output(callee.name, depth)
        args = [self._eval(a, depth) for a in node.args]
        kwargs = {str(kw.key): self._eval(kw.value, depth) for kw in node.kwargs}
        keys = list(kwargs)

        def split(xs: Sequence[object]) -> tuple[list[object], dict[str, object]]:
            return list(xs[: len(args)]), dict(zip(keys, xs[len(args) :], strict=True))

        if isinstance(callee, n.Getattr):
            if (
                isinstance(callee.node, n.Name)
                and callee.node.name == "loop"
                and callee.attr == "cycle"
            ):
                value = EMPTY
                for arg in args:
                    value = self._capped(value.union(arg))
                return value
            receiver = self._eval(callee.node, depth)
            method = callee.attr

            def call_method(xs: Sequence[object]) -> object:
                a, k = split(xs[1:])
                return _method(xs[0], method, a, k)

            return self._product([receiver, *args, *kwargs.values()], call_method, text=True)
        target = self._eval(callee, depth)
        if target.unknown is None and target.choices == {GlobalRef("dict")}:
            return self._product(
                [*args, *kwargs.values()], lambda xs: _dict_call(*split(xs)), text=True
            )
        if target.unknown is None and target.choices == {GlobalRef("range")}:
            return self._product(args, lambda xs: _range(*xs))
        return ANY

    def _macro_output(self, name: str, depth: int) -> Value:
        if name in self._active_macros:
            return built()
        self._active_macros.add(name)
        try:
            return self._output(self.macros[name].body, depth)
        finally:
            self._active_macros.discard(name)

    def _output(self, body: list[nodes.Node], depth: int) -> Value:
        """The text a block of statements writes, when it is only output."""
        value = Value(frozenset({""}))
        for stmt in body:
            if isinstance(stmt, self._n.Output):
                for item in stmt.nodes:
                    value = self._concat(value, self._eval(item, depth))
            else:
                value = self._concat(value, built())
        return value

    # -- combinators --------------------------------------------------------------------------

    def _unknown_from(self, value: Value) -> Value:
        """An unknown result of an operation on `value`: built if `value` holds text."""
        return built() if _has_text(value) or (value.unknown and value.unknown.built) else ANY

    def _capped(self, value: Value) -> Value:
        if len(value.choices) <= MAX_CHOICES:
            return value
        kept = frozenset(c for c in value.choices if isinstance(c, str) and self.interesting(c))
        kept = frozenset(sorted(kept, key=lambda c: (len(c), str(c)))[:MAX_CHOICES])
        text = [c for c in value.choices if isinstance(c, str) and c not in kept]
        if text:
            rest = Unknown(True, True, _common_prefix(text), _common_suffix(text))
        else:
            rest = Unknown()
        return Value(kept, rest if value.unknown is None else value.unknown.join(rest))

    def _concat(self, left: Value, right: Value) -> Value:
        known = [Value(left.choices), Value(right.choices)]
        out = self._product(known, lambda xs: _to_str(xs[0]) + _to_str(xs[1]), text=True)
        if left.unknown is None and right.unknown is None:
            return out
        prefixes: list[str] = []
        suffixes: list[str] = []
        built_any = _has_text(left) or _has_text(right)
        lu, ru = left.unknown, right.unknown
        if lu is not None:
            built_any = built_any or lu.built
            lp = lu.prefix if lu.built else ""
            for y in right.choices:
                prefixes.append(lp)
                suffixes.append(_safe_str(y))
            if ru is not None:
                prefixes.append(lp)
                suffixes.append(ru.suffix if ru.built else "")
        if ru is not None:
            built_any = built_any or ru.built
            rp, rs = (ru.prefix, ru.suffix) if ru.built else ("", "")
            for x in left.choices:
                prefixes.append(_safe_str(x) + rp)
                suffixes.append(rs)
        overflow = bool((lu and lu.overflow) or (ru and ru.overflow))
        if not built_any:
            unknown = Unknown(overflow=overflow)
        else:
            unknown = Unknown(
                True,
                overflow,
                _common_prefix(prefixes)[:MAX_STRING],
                _common_suffix(suffixes)[-MAX_STRING:],
            )
        return Value(out.choices, unknown if out.unknown is None else out.unknown.join(unknown))

    def _map(
        self, value: Value, func: Callable[[object], object], *, elements: bool = False
    ) -> Value:
        """`func` applied to every choice; `elements` takes the union of the resulting items."""
        if not elements:
            return self._product([value], lambda xs: func(xs[0]), text=True)
        out = EMPTY if value.unknown is None else self._unknown_from(value)
        for choice in value.choices:
            self._spend()
            try:
                items = func(choice)
            except _Unknowable:
                out = out.union(self._unknown_from(Value(frozenset({choice}))))
                continue
            assert isinstance(items, tuple)
            out = self._capped(out.union(Value(frozenset(items))))
        return out

    def _map2(
        self,
        left: Value,
        right: Value,
        func: Callable[[object, object], object],
        *,
        text: bool = False,
    ) -> Value:
        return self._product([left, right], lambda xs: func(xs[0], xs[1]), text=text)

    def _product(
        self,
        values: Sequence[Value],
        func: Callable[[Sequence[object]], object],
        *,
        text: bool = False,
        affixes: bool = False,
        reverse: bool = False,
    ) -> Value:
        """`func` over every combination of the operands' concrete values.

        Combinations with an unknown operand give an unknown result, built when `text` and
        template text went in. With `affixes` (a case change or `|reverse` of one operand) a
        known prefix and suffix of the first operand carry over.
        """
        unknown: Unknown | None = None
        if any(v.unknown is not None for v in values):
            is_built = text and any(_has_text(v) or (v.unknown and v.unknown.built) for v in values)
            overflow = any(v.unknown and v.unknown.overflow for v in values)
            first = values[0].unknown if values else None
            prefix = suffix = ""
            if affixes and first is not None and first.built and len(values) == 1:
                prefix, suffix = (first.prefix, first.suffix)
                try:
                    prefix, suffix = str(func([prefix])), str(func([suffix]))
                except (_Unknowable, TypeError):
                    prefix = suffix = ""
                if reverse:
                    prefix, suffix = suffix, prefix
            unknown = Unknown(is_built, overflow, prefix, suffix)
        sizes = [len(v.choices) for v in values]
        if math.prod(sizes) > MAX_CHOICES * MAX_CHOICES:
            is_text = text and any(_has_text(v) for v in values)
            over = Unknown(is_text, True) if is_text else Unknown()
            return Value(frozenset(), over if unknown is None else unknown.join(over))
        results: set[object] = set()
        failed: Unknown | None = None
        for combo in itertools.product(*(sorted(v.choices, key=repr) for v in values)):
            self._spend()
            try:
                result = _check_str(func(combo))
            except _FAILURES:
                gone = Unknown(True) if text and any(_is_text(c) for c in combo) else Unknown()
                failed = gone if failed is None else failed.join(gone)
                continue
            if isinstance(result, str):
                self._spend(len(result) // 64)
            results.add(result)
        if failed is not None:
            unknown = failed if unknown is None else unknown.join(failed)
        return self._capped(Value(frozenset(results), unknown))


def _stringy(value: Value) -> bool:
    return all(isinstance(c, str) for c in value.choices)


def _has_text(value: Value) -> bool:
    return any(True for _ in value.strings)


def _safe_str(value: object) -> str:
    try:
        return _to_str(value)
    except _Unknowable:
        return ""


def _unpack(value: object, *, index: int, width: int) -> object:
    if isinstance(value, str) or not isinstance(value, tuple) or len(value) != width:
        raise _Unknowable
    return value[index]


def _number_op(value: object, sign: int) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unknowable
    return sign * value


def _make_dict(values: Sequence[object], count: int) -> JDict:
    pairs: dict[object, object] = {}
    for key, value in zip(values[:count], values[count:], strict=True):
        try:
            pairs[key] = value
        except TypeError as exc:
            raise _Unknowable from exc
    return JDict(pairs.items())


def _dict_call(args: list[object], kwargs: dict[str, object]) -> JDict:
    pairs: dict[object, object] = {}
    if len(args) > 1:
        raise _Unknowable
    if args:
        source = args[0]
        if isinstance(source, JDict):
            pairs.update(source)
        else:
            for item in _as_items(source):
                if not isinstance(item, tuple) or isinstance(item, str) or len(item) != 2:
                    raise _Unknowable
                pairs[item[0]] = item[1]
    pairs.update(kwargs)
    return JDict(pairs.items())


def _range(*args: object) -> JList:
    ints = [_int_arg(a, limit=MAX_INT) for a in args]
    try:
        numbers = range(*ints)
    except (TypeError, ValueError) as exc:
        raise _Unknowable from exc
    if len(numbers) > MAX_ITEMS:
        raise _Unknowable
    return JList(numbers)


def _slice(xs: Sequence[object]) -> object:
    target, *parts = xs
    bounds = [None if p is None else _int_arg(p, limit=MAX_INT) for p in parts]
    if not isinstance(target, str | tuple) or isinstance(target, JDict) or bounds[2] == 0:
        raise _Unknowable
    result = target[slice(*bounds)]
    return JList(result) if isinstance(target, JList) else result


def _getitem(target: object, key: object) -> object:
    if isinstance(target, JDict):
        return target.get(key)
    if isinstance(target, str | tuple):
        index = _int_arg(key, limit=MAX_INT)
        try:
            return target[index]
        except IndexError as exc:
            raise _Unknowable from exc
    raise _Unknowable


def _getattr(target: object, attr: str) -> object:
    if isinstance(target, JDict):
        return target.get(attr)
    raise _Unknowable


def _method(receiver: object, method: str, args: list[object], kwargs: dict[str, object]) -> object:
    if isinstance(receiver, str):
        return _str_method(receiver, method, args, kwargs)
    if isinstance(receiver, JDict) and not kwargs:
        if method == "keys" and not args:
            return receiver.keys()
        if method == "values" and not args:
            return JList(v for _, v in receiver)
        if method == "items" and not args:
            return JList(receiver)
        if method == "get" and args:
            try:
                return receiver.get(args[0])
            except _Unknowable:
                return args[1] if len(args) > 1 else None
    if receiver == GlobalRef("dict") and method == "fromkeys" and args and not kwargs:
        fill = args[1] if len(args) > 1 else None
        return JDict((k, fill) for k in dict.fromkeys(_as_items(args[0])))
    raise _Unknowable


def _arith(op: Callable[[object, object], object]) -> Callable[[object, object], object]:
    def apply(left: object, right: object) -> object:
        if isinstance(left, str) or isinstance(right, str):
            raise _Unknowable
        try:
            return op(left, right)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise _Unknowable from exc

    return apply


def _add(left: object, right: object) -> object:
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, JList) and isinstance(right, JList):
        return JList(left + right)
    return _arith(lambda a, b: a + b)(left, right)  # type: ignore[operator]


def _mul(left: object, right: object) -> object:
    if isinstance(right, str | tuple) and not isinstance(left, str | tuple):
        left, right = right, left
    if isinstance(left, str | tuple) and not isinstance(left, JDict):
        count = _int_arg(right, limit=MAX_INT) if not isinstance(right, bool) else int(right)
        if len(left) * max(count, 0) > (MAX_STRING if isinstance(left, str) else MAX_ITEMS):
            raise _Unknowable
        product = left * count
        return JList(product) if isinstance(left, JList) else product
    return _arith(lambda a, b: a * b)(left, right)  # type: ignore[operator]


def _mod(left: object, right: object) -> object:
    if isinstance(left, str):
        return percent_format(left, right)
    return _arith(lambda a, b: a % b)(left, right)  # type: ignore[operator]


def _pow(left: object, right: object) -> object:
    numbers = isinstance(left, int | float) and isinstance(right, int | float)
    if numbers and (abs(right) > 64 or (abs(left) > 1 and abs(right) * math.log2(abs(left)) > 62)):  # type: ignore[arg-type]
        raise _Unknowable
    return _arith(lambda a, b: a**b)(left, right)  # type: ignore[operator]


_BINARY: dict[str, Callable[[object, object], object]] = {
    "+": _add,
    "-": _arith(lambda a, b: a - b),  # type: ignore[operator]
    "*": _mul,
    "/": _arith(lambda a, b: a / b),  # type: ignore[operator]
    "//": _arith(lambda a, b: a // b),  # type: ignore[operator]
    "%": _mod,
    "**": _pow,
}
