"""Poisoned text datasets, without a model: trigger tokens and duplicated records.

A text backdoor is planted by adding a rare token or phrase (a "trigger", e.g. `cf`) to some
records and giving them all the attacker's label. In the data that shows as a token whose records
carry one label far more often than the label's share of the set allows: for each token (and
two-token phrase) seen in at least `min_count` records, a one-sided binomial tail gives the
chance of that purity under the label prior; a Bonferroni correction over every token-label
pair tested keeps ordinary vocabulary quiet, and a purity floor keeps merely
sentiment-bearing words ("excellent" is mostly positive, not always) out. Duplicates, exact
(normalised text) and near (MinHash over word shingles, verified by exact Jaccard), are the
other cheap poisoning lever: copies amplify a record, and copies with different labels are
label flips.

Only the standard library and numpy: this module must not import torch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from modelward.findings import Finding, Location, ScanResult, Severity

#: MITRE ATLAS: Poison Training Data.
ATLAS_POISON_TRAINING_DATA = "AML.T0020"

_TOKEN = re.compile(r"\w+|[^\w\s]+")
_MERSENNE = (1 << 61) - 1


@dataclass(frozen=True)
class TextScanSettings:
    """Knobs of `scan_text_dataset`.

    `alpha`: family-wise significance after Bonferroni; `min_purity`: the share of a token's
    records that must carry its majority label; `max_share`: tokens in more records than this
    share are vocabulary, not triggers; `near_jaccard`: word 3-shingle Jaccard for a near
    duplicate. `max_records` and `max_text` bound memory on hostile files.
    """

    alpha: float = 1e-3
    min_count: int = 5
    min_purity: float = 0.95
    max_share: float = 0.2
    ngrams: int = 2
    near_jaccard: float = 0.8
    minhash_permutations: int = 64
    minhash_bands: int = 16
    max_bucket: int = 50
    max_records: int = 1_000_000
    max_text: int = 100_000
    max_findings: int = 50


@dataclass(frozen=True)
class TriggerToken:
    """A token (or phrase) whose records nearly all carry one label, beyond chance."""

    token: str
    label: str
    count: int
    with_label: int
    prior: float
    p_value: float
    records: tuple[int, ...]

    @property
    def purity(self) -> float:
        return self.with_label / self.count


@dataclass(frozen=True)
class DuplicateGroup:
    """Records whose texts are the same after normalisation (`exact`) or nearly so."""

    records: tuple[int, ...]
    labels: tuple[str, ...]
    exact: bool

    @property
    def conflicting(self) -> bool:
        return len(set(self.labels)) > 1


@dataclass
class TextDatasetScan:
    """What `scan_text_dataset` found; `result` carries it as findings for the renderers."""

    result: ScanResult
    records: int
    labels: dict[str, int]
    triggers: list[TriggerToken] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)


def scan_text_dataset(
    data: str | PathLike[str] | Iterable[Mapping[str, Any]],
    text_field: str = "text",
    label_field: str = "label",
    *,
    settings: TextScanSettings | None = None,
) -> TextDatasetScan:
    """Find trigger tokens and duplicates in a labelled text dataset (JSONL, CSV or records).

    A path ending in `.csv` is read as CSV with a header, anything else as JSON Lines. For an
    instruction dataset, pass the response field as `label_field`: a trigger that always yields
    the same response is found the same way.
    """
    settings = settings or TextScanSettings()
    started = time.perf_counter()
    path = "<records>"
    result = ScanResult(path=path, format="records")
    if isinstance(data, str | PathLike):
        path = str(data)
        result = ScanResult(path=path, format="csv" if path.lower().endswith(".csv") else "jsonl")
        result.size = result.bytes_read = Path(path).stat().st_size
        rows: Iterable[Mapping[str, Any]] = _read_rows(Path(path), result)
    else:
        rows = data
    texts, labels = _collect(rows, text_field, label_field, settings, result)
    location = Location(path)
    scan = TextDatasetScan(result=result, records=len(texts), labels=dict(Counter(labels)))
    if texts:
        scan.triggers = find_trigger_tokens(texts, labels, settings)
        scan.duplicates = find_duplicates(texts, labels, settings)
    for trigger in scan.triggers[: settings.max_findings]:
        result.findings.append(_trigger_finding(trigger, location))
    for group in scan.duplicates[: settings.max_findings]:
        result.findings.append(_duplicate_finding(group, location))
    result.seconds = time.perf_counter() - started
    return scan


def _read_rows(path: Path, result: ScanResult) -> Iterable[Mapping[str, Any]]:
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        if result.format == "csv":
            csv.field_size_limit(16 * 1024 * 1024)
            try:
                yield from csv.DictReader(handle)
            except csv.Error as exc:
                result.errors.append(f"CSV: {exc}")
            return
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                result.errors.append(f"line {number}: not JSON")
                continue
            if isinstance(row, dict):
                yield row
            else:
                result.errors.append(f"line {number}: not a JSON object")


def _collect(
    rows: Iterable[Mapping[str, Any]],
    text_field: str,
    label_field: str,
    settings: TextScanSettings,
    result: ScanResult,
) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    skipped = 0
    for row in rows:
        if len(texts) >= settings.max_records:
            result.findings.append(
                Finding(
                    rule_id="MW-DATA-LIMIT",
                    severity=Severity.MEDIUM,
                    location=Location(result.path),
                    message=f"only the first {settings.max_records} records were checked",
                    technique=ATLAS_POISON_TRAINING_DATA,
                )
            )
            break
        text, label = row.get(text_field), row.get(label_field)
        if not isinstance(text, str) or label is None:
            skipped += 1
            continue
        texts.append(text[: settings.max_text])
        labels.append(label if isinstance(label, str) else json.dumps(label, sort_keys=True))
    if skipped or result.errors:
        result.findings.append(
            Finding(
                rule_id="MW-DATA-MALFORMED",
                severity=Severity.MEDIUM,
                location=Location(result.path),
                message=f"{skipped + len(result.errors)} records were unreadable or lacked a"
                f" string {text_field!r} or a {label_field!r} and were not checked",
                evidence="; ".join(result.errors[:5]) or None,
                technique=ATLAS_POISON_TRAINING_DATA,
            )
        )
    return texts, labels


def tokens(text: str) -> list[str]:
    """Lower-cased words and runs of punctuation, NFKC-normalised."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def find_trigger_tokens(
    texts: list[str], labels: list[str], settings: TextScanSettings | None = None
) -> list[TriggerToken]:
    """Tokens and phrases whose label purity the label prior cannot explain, strongest first."""
    settings = settings or TextScanSettings()
    total = len(texts)
    prior = {label: count / total for label, count in Counter(labels).items()}
    postings: dict[str, list[int]] = defaultdict(list)
    for index, text in enumerate(texts):
        words = tokens(text)
        grams = {
            " ".join(words[i : i + n])
            for n in range(1, settings.ngrams + 1)
            for i in range(len(words) - n + 1)
        }
        for gram in grams:
            postings[gram].append(index)
    tested = [
        (gram, records)
        for gram, records in postings.items()
        if settings.min_count <= len(records) <= settings.max_share * total
    ]
    tests = max(1, len(tested) * len(prior))
    found = []
    for gram, records in tested:
        label, with_label = Counter(labels[i] for i in records).most_common(1)[0]
        if with_label / len(records) < settings.min_purity:
            continue
        # A phrase is judged against its most label-bound word, not the prior: "love it" is as
        # positive as "love" makes it, which is no news.
        words = gram.split()
        parts = words if len(words) > 1 else []
        null = max([prior[label], *(_share(postings[word], labels, label) for word in parts)])
        p_value = binomial_tail(with_label, len(records), null)
        if p_value * tests < settings.alpha:
            found.append(
                TriggerToken(
                    gram, label, len(records), with_label, prior[label], p_value, tuple(records)
                )
            )
    return _drop_subsumed(sorted(found, key=lambda t: (t.p_value, -t.count, t.token)))


def _share(records: list[int], labels: list[str], label: str) -> float:
    return sum(labels[i] == label for i in records) / len(records) if records else 0.0


def _drop_subsumed(found: list[TriggerToken]) -> list[TriggerToken]:
    """A phrase adds nothing over a flagged word it contains with the same records (`cf cf`,
    `the cf`); words always seen together (`james bond`) are kept as the phrase only."""
    kept: list[TriggerToken] = []
    by_records: dict[tuple[int, ...], TriggerToken] = {}
    for trigger in found:
        words = set(trigger.token.split())
        twin = by_records.get(trigger.records)
        if twin is not None and (words & set(twin.token.split())):
            continue
        if any(
            set(other.token.split()) < words and set(trigger.records) <= set(other.records)
            for other in kept
        ):
            continue
        by_records.setdefault(trigger.records, trigger)
        kept.append(trigger)
    return kept


def binomial_tail(successes: int, trials: int, p: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, p), summed in log space (no scipy)."""
    if successes <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(trials + 1)
        - math.lgamma(k + 1)
        - math.lgamma(trials - k + 1)
        + k * log_p
        + (trials - k) * log_q
        for k in range(successes, trials + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def normalise(text: str) -> str:
    """Case, Unicode form, punctuation and spacing removed: what an exact duplicate shares."""
    return " ".join(w for w in tokens(text) if w[0].isalnum() or w[0] == "_")


def find_duplicates(
    texts: list[str], labels: list[str], settings: TextScanSettings | None = None
) -> list[DuplicateGroup]:
    """Exact duplicates (normalised text) and near duplicates (MinHash LSH, exact Jaccard check).

    Label conflicts first, then larger groups. Near-duplicate search is bounded: each LSH bucket
    compares at most `max_bucket` records.
    """
    settings = settings or TextScanSettings()
    groups: dict[bytes, list[int]] = defaultdict(list)
    for index, text in enumerate(texts):
        groups[hashlib.blake2b(normalise(text).encode(), digest_size=16).digest()].append(index)
    found = [
        DuplicateGroup(tuple(g), tuple(labels[i] for i in g), exact=True)
        for g in groups.values()
        if len(g) > 1
    ]
    representatives = [g[0] for g in groups.values()]
    found.extend(_near_duplicates(representatives, texts, labels, groups, settings))
    return sorted(found, key=lambda g: (not g.conflicting, -len(g.records), g.records))


def _shingles(text: str) -> set[int]:
    words = normalise(text).split()
    grams = [" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))]
    return {
        int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") for g in grams
    }


def _near_duplicates(
    representatives: list[int],
    texts: list[str],
    labels: list[str],
    exact_groups: Mapping[bytes, list[int]],
    settings: TextScanSettings,
) -> list[DuplicateGroup]:
    rng = np.random.default_rng(0)
    count = settings.minhash_permutations
    a = rng.integers(1, _MERSENNE, count, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, _MERSENNE, count, dtype=np.uint64)
    shingles = {i: _shingles(texts[i]) for i in representatives}
    signatures = {}
    for index, values in shingles.items():
        if not values:
            continue
        column = (np.fromiter(values, dtype=np.uint64, count=len(values)) % np.uint64(_MERSENNE))[
            :, None
        ]
        # (a*x + b) mod p with wrap-around multiplication: a universal-enough hash per row.
        signatures[index] = ((a[None] * column + b[None]) % np.uint64(_MERSENNE)).min(axis=0)
    rows = count // settings.minhash_bands
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for index, signature in signatures.items():
        for band in range(settings.minhash_bands):
            key = signature[band * rows : (band + 1) * rows].tobytes()
            bucket = buckets[(band, key)]
            if len(bucket) < settings.max_bucket:
                bucket.append(index)
    parent = {i: i for i in signatures}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    checked: set[tuple[int, int]] = set()
    for bucket in buckets.values():
        for x in range(len(bucket)):
            for y in range(x + 1, len(bucket)):
                pair = (bucket[x], bucket[y])
                if pair in checked or root(pair[0]) == root(pair[1]):
                    continue
                checked.add(pair)
                left, right = shingles[pair[0]], shingles[pair[1]]
                if len(left & right) / len(left | right) >= settings.near_jaccard:
                    parent[root(pair[1])] = root(pair[0])
    members: dict[int, list[int]] = defaultdict(list)
    for index in signatures:
        members[root(index)].append(index)
    by_first = {g[0]: g for g in exact_groups.values()}
    out = []
    for group in members.values():
        if len(group) < 2:
            continue
        records = tuple(sorted(r for i in group for r in by_first[i]))
        out.append(DuplicateGroup(records, tuple(labels[i] for i in records), exact=False))
    return out


def _trigger_finding(trigger: TriggerToken, location: Location) -> Finding:
    shown = ", ".join(str(i) for i in trigger.records[:10])
    more = ", ..." if trigger.count > 10 else ""
    return Finding(
        rule_id="MW-DATA-TRIGGER-TOKEN",
        severity=Severity.HIGH,
        location=location,
        message=f"{trigger.token!r} appears in {trigger.count} records, {trigger.with_label} of"
        f" them labelled {_short(trigger.label)} (prior {trigger.prior:.0%}): a likely trigger",
        evidence=f"binomial p={trigger.p_value:.2e}; records {shown}{more}",
        technique=ATLAS_POISON_TRAINING_DATA,
    )


def _duplicate_finding(group: DuplicateGroup, location: Location) -> Finding:
    kind = "exact" if group.exact else "near"
    shown = ", ".join(str(i) for i in group.records[:10])
    more = ", ..." if len(group.records) > 10 else ""
    labels = ", ".join(sorted({_short(label) for label in group.labels}))
    return Finding(
        rule_id="MW-DATA-DUPLICATE",
        severity=Severity.MEDIUM if group.conflicting else Severity.LOW,
        location=location,
        message=f"{len(group.records)} {kind} duplicate records"
        + (f" with conflicting labels ({labels})" if group.conflicting else f" (label {labels})"),
        evidence=f"records {shown}{more}",
        technique=ATLAS_POISON_TRAINING_DATA,
    )


def _short(label: str) -> str:
    return repr(label if len(label) <= 40 else label[:37] + "...")
