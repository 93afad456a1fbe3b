"""Look-alike names: hub model ids and Python packages that imitate well-known ones.

An attacker uploads `facebok/opt-350m`, `meta-llama-official/...` or a Cyrillic
`mеta-llama` and waits for a typo or a copy-paste (ATLAS "Organization
Confusion on Hugging Face", AML.T0010.003); PyPI typosquats (`reqeusts`) work
the same way. Names are checked against shipped lists of popular organisations,
models and packages (`data/popular_*.txt`, refreshed by
`scripts/refresh_popular_names.py`): edit distance, confusable characters,
separators, official-looking affixes, and a known model name under an unknown
organisation. An exact known name is clean.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from modelward._datafile import load_table
from modelward.findings import ATLAS_MODEL_SUPPLY_CHAIN, Finding, Location, Severity

#: ATLAS "ML Supply Chain Compromise: AI Software" (packages rather than models).
ATLAS_SOFTWARE_SUPPLY_CHAIN = "AML.T0010.001"
#: Longest name compared by edit distance (hub ids are at most 96 characters).
MAX_NAME_LENGTH = 128
#: Characters of a name the near-miss index is built on (longer prefixes: bigger index).
INDEX_PREFIX = 8
_SEPARATORS = re.compile(r"[-_.]+")


def max_distance(length: int) -> int:
    """Edits a name of `length` may differ by and still be a typo: none for very short names."""
    return 0 if length < 4 else 1 if length <= 8 else 2


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: a swap of neighbours is one edit)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def _deletions(text: str, depth: int) -> set[str]:
    """`text` with up to `depth` characters removed (the symmetric-deletion index keys)."""
    found = {text}
    level = {text}
    for _ in range(depth):
        level = {t[:i] + t[i + 1 :] for t in level for i in range(len(t))}
        found |= level
    return found


def fold(name: str) -> str:
    """How names are compared: NFKC (full-width forms become ASCII), then case-insensitive."""
    return unicodedata.normalize("NFKC", name).casefold()


def squash(name: str) -> str:
    """The name without separators: `openai_community` and `openai-community` are one."""
    return _SEPARATORS.sub("", name)


def pep503(name: str) -> str:
    """PyPI's normalised project name: `Scikit_Learn` is `scikit-learn`."""
    return _SEPARATORS.sub("-", name).lower()


@cache
def _confusables() -> tuple[dict[int, str], tuple[tuple[str, str], ...]]:
    table = load_table("names.toml")
    chars = {ord(k): str(v) for k, v in table["confusables"].items()}
    return chars, tuple((str(k), str(v)) for k, v in table["sequences"].items())


def skeleton(name: str) -> str:
    """What a name looks like: confusable characters and sequences folded to one form."""
    chars, sequences = _confusables()
    text = unicodedata.normalize("NFKC", name).translate(chars).lower().translate(chars)
    for sequence, replacement in sequences:
        text = text.replace(sequence, replacement)
    return text


def describe_confusable(name: str, known: str) -> str:
    """Why `name` looks like `known`: the first character that differs, with its code point."""
    for i, c in enumerate(name):
        if i >= len(known) or c.casefold() != known[i].casefold():
            tail = known[i : i + 1] or "end"
            if not c.isascii():
                return f"{c!r} (U+{ord(c):04X}) at position {i} looks like {tail!r}"
            _, sequences = _confusables()
            width = 2 if any(name[i : i + 2].lower() == seq for seq, _ in sequences) else 1
            return f"{name[i : i + width]!r} at position {i} looks like {tail!r}"
    return f"differs from {known!r} only in how it renders"


@dataclass(frozen=True)
class LookAlike:
    """One name that resembles a known one, and why."""

    rule_id: str
    severity: Severity
    name: str
    resembles: str
    reason: str


class KnownNames:
    """A list of well-known names, indexed for exact, look-alike and near-miss lookups.

    Near misses use a symmetric-deletion index (as SymSpell does): each known name is
    stored under every variant of its first `INDEX_PREFIX` characters with up to
    `max_distance` of them removed, so a candidate only computes the edit distance to
    the few names that share a variant with it.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names: dict[str, str] = {}  # folded -> as listed
        self.skeletons: dict[str, str] = {}
        self.squashed: dict[str, str] = {}
        self._index: dict[str, list[str]] = {}
        for name in names:
            key = fold(name)
            if key in self.names:
                continue
            self.names[key] = name
            self.skeletons.setdefault(skeleton(key), key)
            self.squashed.setdefault(squash(key), key)
            if len(key) <= MAX_NAME_LENGTH:
                for variant in _deletions(key[:INDEX_PREFIX], max_distance(len(key))):
                    self._index.setdefault(variant, []).append(key)

    def nearest(self, name: str) -> tuple[str, int] | None:
        """The closest known name within its typo distance of `name` (never `name` itself)."""
        key = fold(name)
        if len(key) > MAX_NAME_LENGTH or len(key) < 4:
            return None
        best: tuple[int, str] | None = None
        seen: set[str] = set()
        for variant in _deletions(key[:INDEX_PREFIX], 2):
            for known in self._index.get(variant, ()):
                if known in seen:
                    continue
                seen.add(known)
                if known == key or abs(len(known) - len(key)) > max_distance(len(known)):
                    continue
                distance = edit_distance(key, known)
                if 0 < distance <= max_distance(len(known)) and (
                    best is None or (distance, known) < best
                ):
                    best = (distance, known)
        return (self.names[best[1]], best[0]) if best else None


def _read_list(name: str) -> list[str]:
    text = files("modelward").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


@dataclass(frozen=True)
class PopularNames:
    """The shipped lists: organisations, model ids by organisation, and PyPI packages."""

    orgs: KnownNames
    models: dict[str, list[str]]  # folded org -> model names as listed
    model_keys: dict[str, str]  # model_key(name) -> canonical "org/name"
    packages: KnownNames
    package_aliases: dict[str, str]
    org_prefixes: tuple[str, ...]
    org_suffixes: tuple[str, ...]
    model_suffixes: tuple[str, ...]


@cache
def popular_names() -> PopularNames:
    """The lists in `modelward/data/`, read and indexed once per process."""
    table = load_table("names.toml")
    affixes = table["affixes"]
    model_ids = _read_list("popular_models.txt")
    models: dict[str, list[str]] = {}
    for model_id in model_ids:
        org, _, name = model_id.partition("/")
        models.setdefault(fold(org), []).append(name)
    suffixes = tuple(affixes["model_suffixes"])
    reuploaders = {fold(org) for org in affixes["reuploaders"]}
    keys: dict[str, str] = {}
    # A name maps to its original publisher, not to a quantised re-upload of it.
    for model_id in sorted(model_ids, key=lambda m: fold(m.partition("/")[0]) in reuploaders):
        org, _, name = model_id.partition("/")
        for key in _model_keys(name, org, suffixes):
            keys.setdefault(key, model_id)
    return PopularNames(
        orgs=KnownNames([*_read_list("popular_orgs.txt"), *(m.split("/")[0] for m in model_ids)]),
        models=models,
        model_keys=keys,
        packages=KnownNames(_read_list("popular_packages.txt")),
        package_aliases={str(k): str(v) for k, v in table["package_aliases"].items()},
        org_prefixes=tuple(affixes["org_prefixes"]),
        org_suffixes=tuple(affixes["org_suffixes"]),
        model_suffixes=suffixes,
    )


def _model_keys(name: str, org: str, suffixes: tuple[str, ...]) -> Iterator[str]:
    """A model name as compared across organisations: decorations and the org's own words off.

    `meta-llama/Meta-Llama-3-8B` is also known as `Llama-3-8B`, so both keys are kept.
    """
    base = fold(name)
    stripped = True
    while stripped:
        stripped = False
        for suffix in suffixes:
            if base.endswith(suffix) and len(base) > len(suffix):
                base, stripped = base[: -len(suffix)], True
    yield squash(base)
    for word in _SEPARATORS.split(fold(org)):
        if word and base.startswith(word) and _SEPARATORS.match(base, len(word)):
            yield squash(base[len(word) :])


# --- hub model ids -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Match:
    how: str  # homoglyph, separator, affix, distance, non-ascii
    known: str
    why: str
    severity: Severity = Severity.HIGH


def _look_alike(
    name: str, known: KnownNames, prefixes: tuple[str, ...] = (), suffixes: tuple[str, ...] = ()
) -> _Match | None:
    """How `name` imitates a known name, or None (known names and unlike names)."""
    key = fold(name)
    if key in known.names:
        if name.casefold() != key:  # only equal after NFKC: full-width or other compatibility forms
            return _Match("homoglyph", known.names[key], "compatibility (full-width) characters")
        return None
    look = known.skeletons.get(skeleton(name))
    if look is not None:
        return _Match("homoglyph", known.names[look], describe_confusable(name, known.names[look]))
    flat = known.squashed.get(squash(key))
    if flat is not None:
        return _Match("separator", known.names[flat], "same name with other separators")
    dashed = _SEPARATORS.sub("-", key)
    for prefix in prefixes:
        rest = dashed.removeprefix(prefix)
        if rest != dashed and rest in known.names:
            return _Match("affix", known.names[rest], f"prefix {prefix!r} added to a known name")
    for suffix in suffixes:
        rest = dashed.removesuffix(suffix)
        if rest != dashed and rest in known.names:
            return _Match("affix", known.names[rest], f"suffix {suffix!r} added to a known name")
    near = known.nearest(key)
    if near is not None:
        severity = Severity.HIGH if near[1] == 1 else Severity.MEDIUM
        return _Match("distance", near[0], f"edit distance {near[1]}", severity)
    if not name.isascii():
        return _Match("non-ascii", "", "non-ASCII characters", Severity.MEDIUM)
    return None


def _rule(match: _Match, typosquat: str) -> str:
    if match.how == "non-ascii":
        return "MW-NAME-NON-ASCII"
    return "MW-NAME-HOMOGLYPH" if match.how == "homoglyph" else typosquat


def check_model_id(model_id: str) -> list[LookAlike]:
    """Look-alike findings for one hub id `org/name[@revision]`; [] when it looks genuine."""
    names = popular_names()
    repo = model_id.partition("@")[0]
    org, slash, name = repo.partition("/")
    if not slash or not org or not name:
        return []
    found = _look_alike(org, names.orgs, names.org_prefixes, names.org_suffixes)
    if found is not None:
        why = f"organisation {org!r}: {found.why}"
        if found.how == "non-ascii":
            why += "; hub ids are ASCII"
        rule = _rule(found, "MW-NAME-TYPOSQUAT")
        return [LookAlike(rule, found.severity, model_id, found.known, why)]
    if fold(org) in names.orgs.names:
        return _check_model_name(model_id, org, name, names)
    for key in _model_keys(name, org, names.model_suffixes):
        canonical = names.model_keys.get(key)
        if canonical is not None:
            return [
                LookAlike(
                    "MW-NAME-ORG-CONFUSION",
                    Severity.MEDIUM,
                    model_id,
                    canonical,
                    f"{name!r} is the name of {canonical}; {org!r} is not a known"
                    " organisation: a re-upload or an impersonation",
                )
            ]
    return []


@cache
def _org_models(org: str) -> KnownNames:
    """The known models of one organisation, indexed on first use."""
    return KnownNames(popular_names().models.get(org, []))


def _check_model_name(model_id: str, org: str, name: str, names: PopularNames) -> list[LookAlike]:
    """A near miss of a known model of a known organisation: `openai-community/gtp2`."""
    listed = _org_models(fold(org))
    if not listed.names or fold(name) in listed.names:
        return []
    found = _look_alike(name, listed)
    if found is None:
        return []
    canonical = f"{org}/{found.known}" if found.known else ""
    why = f"model {name!r}: {found.why}"
    return [LookAlike(_rule(found, "MW-NAME-TYPOSQUAT"), found.severity, model_id, canonical, why)]


# --- Python packages ---------------------------------------------------------------------


def check_package(package: str) -> list[LookAlike]:
    """Look-alike findings for one PyPI project name; [] for popular and unlike names."""
    names = popular_names()
    canonical = pep503(package)
    alias = names.package_aliases.get(canonical)
    if alias is not None:
        return [
            LookAlike(
                "MW-NAME-PACKAGE-ALIAS",
                Severity.LOW,
                package,
                alias,
                f"{package!r} is not the project usually meant; install {alias!r}",
            )
        ]
    found = _look_alike(canonical, names.packages)
    if found is None:
        return []
    why = found.why + ("; PyPI names are ASCII" if found.how == "non-ascii" else "")
    rule = _rule(found, "MW-NAME-PACKAGE-TYPOSQUAT")
    return [LookAlike(rule, found.severity, package, found.known, why)]


def to_finding(match: LookAlike, source: str, *, package: bool = False) -> Finding:
    """The shared findings model: where the name was read, what it resembles and why."""
    what = f"resembles {match.resembles!r}" if match.resembles else "is suspicious"
    return Finding(
        rule_id=match.rule_id,
        severity=match.severity,
        location=Location(source),
        message=f"{match.name!r} {what} ({match.reason})",
        technique=ATLAS_SOFTWARE_SUPPLY_CHAIN if package else ATLAS_MODEL_SUPPLY_CHAIN,
    )
