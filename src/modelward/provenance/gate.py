"""`modelward gate`: one pass/fail verdict for CI, joining scan, lock, signature and policy.

Every reason to fail is a `Finding` (rule ids `MW-GATE-*`), so the verdict goes
through the same renderers as a scan (table, JSON, SARIF for code scanning).
The gate only wires existing checks together: the scanner, the lock check of
`modelward.provenance.lock` and the bundle verification of `modelward.integrity`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.config import ConfigError
from modelward.findings import Finding, Location, ScanReport, ScanResult, Severity
from modelward.formats.hf_folder import FOLDER_FORMAT
from modelward.integrity.errors import (
    BundleError,
    IntegrityError,
    KeyMaterialError,
    ModelPathError,
    SignatureError,
)
from modelward.provenance.lock import (
    LockedModel,
    LockError,
    check_model,
    default_hf_cache,
    is_hub_id,
    model_path,
    read_lock,
)
from modelward.provenance.policy import ModelwardConfig, Policy, load_config

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache

#: Detected formats whose loading unpickles (torch.load, joblib.load, pickle.load).
PICKLE_FORMATS = frozenset({"pickle", "pytorch-zip", "pytorch-legacy", "joblib", "torchscript"})
#: Detected formats that are not weights: safetensors-only does not concern them.
NOT_WEIGHTS = frozenset({"text", "empty", "python-source", FOLDER_FORMAT})
#: The result format of the gate's own row in a rendered report.
GATE_FORMAT = "gate"
#: A Hugging Face cache repo folder: `models--org--name`.
HF_REPO_PREFIX = "models--"


@dataclass
class GateResult:
    """The verdict on one model path: it passes only when there is no reason to fail."""

    path: str
    reasons: list[Finding] = field(default_factory=list)
    #: The checks that ran, in order: "scan", "lock", "signature", "sources", "weights";
    #: a check with nothing to look at (no lock file, no bundle, neither required) is left out.
    checks: list[str] = field(default_factory=list)
    scan: ScanReport = field(default_factory=ScanReport)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def summary(self) -> str:
        """The one verdict line: `FAIL models/bert: 2 reasons (MW-GATE-SOURCE, ...)`."""
        if self.passed:
            return f"PASS {self.path}: {', '.join(self.checks)} passed"
        ids = ", ".join(sorted({r.rule_id for r in self.reasons}))
        count = len(self.reasons)
        return f"FAIL {self.path}: {count} reason{'s' if count != 1 else ''} ({ids})"

    def to_report(self) -> ScanReport:
        """The reasons as a one-row report, for the renderers (SARIF results = reasons)."""
        row = ScanResult(path=self.path, format=GATE_FORMAT, findings=list(self.reasons))
        files = [r for r in self.scan.results if r.format != FOLDER_FORMAT]
        row.size = sum(r.size for r in files)
        row.bytes_read = sum(r.bytes_read for r in files)
        row.seconds = self.seconds
        return ScanReport(results=[row], seconds=self.seconds)

    def report(self) -> ScanReport:
        """Deprecated: `to_report()` (the name `DiffResult` uses for the same thing)."""
        return self.to_report()

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: `to_report()`'s document with `gate`, the verdict and its checks."""
        return {
            **self.to_report().to_dict(),
            "gate": {"verdict": self.verdict.lower(), "checks": list(self.checks)},
        }


def gate(
    path: str | PathLike[str],
    config: ModelwardConfig | str | PathLike[str] | None = None,
    *,
    signature: str | PathLike[str] | None = None,
) -> GateResult:
    """Scan `path` and check it against the lock file, its signature and the policy.

    `config` is a loaded config, a config file, or None to discover `./modelward.toml`
    or `./pyproject.toml`. Raises `ConfigError` for a bad config and
    `FileNotFoundError` for a missing path; every other problem is a reason to fail.
    """
    start = time.monotonic()
    model = Path(path)
    if not model.exists() and not model.is_symlink():
        raise FileNotFoundError(f"no such file or directory: {model}")
    if not isinstance(config, ModelwardConfig):
        config = load_config(None if config is None else Path(config))
    policy = config.policy
    result = GateResult(path=str(model))
    from modelward.runner import scan_paths

    result.scan = scan_paths([model], config=config.scan)
    result.checks.append("scan")
    result.reasons += _scan_reasons(result.scan, policy.fail_on)
    hub_ids: list[str] = []
    from modelward.integrity.cache import digest_cache

    with digest_cache() as cache:
        locked = _lock_reasons(model, policy, cache)
        if locked is not None:
            result.checks.append("lock")
            result.reasons += locked[0]
            hub_ids = locked[1]
        signed = _signature_reasons(model, policy, signature, cache)
        if signed is not None:
            result.checks.append("signature")
            result.reasons += signed
    if policy.sources.restricted:
        result.checks.append("sources")
        result.reasons += _source_reasons(model, policy, hub_ids)
    if policy.safetensors_only or policy.forbid_pickle:
        result.checks.append("weights")
        result.reasons += _weight_reasons(result.scan, policy)
    result.seconds = time.monotonic() - start
    return result


def _reason(rule_id: str, where: str | Path, message: str, evidence: str | None = None) -> Finding:
    return Finding(rule_id, Severity.HIGH, Location(str(where)), message, evidence)


def _scan_reasons(report: ScanReport, fail_on: Severity) -> list[Finding]:
    """Each scan finding at or above `fail_on`, and each file the scan could not read."""
    reasons = [
        Finding(
            "MW-GATE-SCAN",
            f.severity,
            f.location,
            f"{f.rule_id}: {f.message}",
            f.evidence,
            f.technique,
        )
        for f in report.findings
        if f.severity >= fail_on
    ]
    reasons += [
        _reason("MW-GATE-SCAN", r.path, f"not scanned: {e}")
        for r in report.results
        for e in r.errors
    ]
    return reasons


def _lock_reasons(
    model: Path, policy: Policy, cache: DigestCache | None
) -> tuple[list[Finding], list[str]] | None:
    """Check every lock entry that is, holds or lies inside `model`; and their hub ids.

    None when there is nothing to check: no lock file, or no entry, and no lock required.
    """
    lock = policy.lock_file
    if lock is None:
        return None
    if not lock.exists():
        if policy.require_lock:
            return [_reason("MW-GATE-UNLOCKED", model, f"no lock file {lock}")], []
        return None
    try:
        entries = read_lock(lock)
    except LockError as exc:
        return [_reason("MW-GATE-LOCK-INVALID", lock, str(exc))], []
    base = lock.parent
    covering = [m for m in entries if _covers(m, model, base)]
    if not covering:
        if policy.require_lock:
            return [_reason("MW-GATE-UNLOCKED", model, f"{model} has no entry in {lock}")], []
        return None
    reasons = []
    hub_ids = []
    for entry in covering:
        if is_hub_id(entry.source, base):
            hub_ids.append(entry.source)
        try:
            check = check_model(entry, base_dir=base, cache=cache)
        except (IntegrityError, OSError) as exc:
            reasons.append(_reason("MW-GATE-LOCK-DRIFT", model, f"{entry.source}: {exc}"))
            continue
        if not check.ok:
            reasons.append(
                _reason(
                    "MW-GATE-LOCK-DRIFT",
                    model,
                    f"{entry.source} differs from {lock.name} (locked {entry.digest})",
                    "; ".join(check.lines()),
                )
            )
    return reasons, hub_ids


def _covers(entry: LockedModel, model: Path, base: Path) -> bool:
    try:
        root, _ = model_path(entry.source, base, default_hf_cache())
    except (LockError, ModelPathError):
        return False
    a, b = _real(root), _real(model)
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _real(path: Path) -> Path:
    """Absolute, with the folders resolved but a final symlink kept (HF snapshot files)."""
    path = Path(os.path.abspath(path))
    return path.parent.resolve() / path.name


def _signature_reasons(
    model: Path,
    policy: Policy,
    signature: str | PathLike[str] | None,
    cache: DigestCache | None,
) -> list[Finding] | None:
    """The bundle must verify with one trusted key and the model must match what it signs.

    A bundle found beside the model is checked whenever trusted keys are configured,
    even when signatures are not required; None when there is nothing to check.
    """
    from modelward.integrity.signing import (
        compare_signed,
        default_signature_path,
        verified_manifest,
    )

    sig = Path(signature) if signature is not None else default_signature_path(model)
    if not sig.exists():
        if policy.signatures.required or signature is not None:
            return [_reason("MW-GATE-UNSIGNED", model, f"no signature bundle {sig}")]
        return None
    if not policy.signatures.trusted_keys:
        if signature is None:
            return None  # a bundle beside the model, but no policy on who may sign
        raise ConfigError(f"cannot verify {sig}: policy.signatures.trusted_keys is empty")
    refused = []
    for key in policy.signatures.trusted_keys:
        try:
            expected, signer = verified_manifest(sig, key=key)
        except SignatureError as exc:
            refused.append(f"{key}: {exc}")
            continue
        except BundleError as exc:
            return [_reason("MW-GATE-SIGNATURE-INVALID", sig, f"unusable bundle: {exc}")]
        except KeyMaterialError as exc:
            raise ConfigError(f"trusted key {key}: {exc}") from None
        links = _hf_repo(model) is not None
        try:
            check = compare_signed(model, sig, expected, allow_symlinks=links, cache=cache)
        except (IntegrityError, OSError) as exc:
            return [_reason("MW-GATE-SIGNATURE-MISMATCH", model, f"cannot compare: {exc}")]
        if check.ok:
            return []
        return [
            _reason(
                "MW-GATE-SIGNATURE-MISMATCH",
                model,
                f"model differs from what {signer} signed in {sig.name}",
                "; ".join(check.lines()),
            )
        ]
    return [
        _reason(
            "MW-GATE-SIGNATURE-INVALID",
            sig,
            "signature does not verify with any trusted key",
            "; ".join(refused),
        )
    ]


def _hf_repo(model: Path) -> str | None:
    """`org/name` (or `name`) when `model` lies in a Hugging Face cache `models--org--name`."""
    for part in Path(os.path.abspath(model)).parts:
        if part.startswith(HF_REPO_PREFIX):
            return part[len(HF_REPO_PREFIX) :].replace("--", "/", 1)
    return None


def _source_reasons(model: Path, policy: Policy, hub_ids: list[str]) -> list[Finding]:
    """Hub models must come from an allowed organisation, local ones from an allowed folder."""
    sources = policy.sources
    repos = [h.partition("@")[0] for h in hub_ids]
    cached = _hf_repo(model)
    if cached is not None:
        repos.append(cached)
    if not repos:
        real = model.resolve()
        if any(real.is_relative_to(p) for p in sources.allowed_paths):
            return []
        allowed = ", ".join(str(p) for p in sources.allowed_paths) or "none"
        return [
            _reason(
                "MW-GATE-SOURCE",
                model,
                f"local model {real} is outside the allowed paths ({allowed})",
            )
        ]
    allowed_orgs = ", ".join(sources.allowed_orgs) or "none"
    reasons = []
    for repo in dict.fromkeys(repos):
        org, slash, _ = repo.partition("/")
        if slash and org.lower() in sources.allowed_orgs:
            continue
        what = f"organisation {org!r}" if slash else "no organisation"
        reasons.append(
            _reason(
                "MW-GATE-SOURCE",
                model,
                f"hub model {repo} has {what}; allowed: {allowed_orgs}",
            )
        )
    return reasons


def _weight_reasons(report: ScanReport, policy: Policy) -> list[Finding]:
    """Pickle-family files when pickle is forbidden; any non-safetensors weights when required."""
    reasons = []
    for r in report.results:
        if r.format in PICKLE_FORMATS:
            key = "safetensors_only" if policy.safetensors_only else "forbid_pickle"
            reasons.append(
                _reason(
                    "MW-GATE-PICKLE-FORBIDDEN",
                    r.path,
                    f"{r.format} weights run code when loaded; the policy sets {key}",
                )
            )
        elif policy.safetensors_only and r.format not in NOT_WEIGHTS | {"safetensors"}:
            reasons.append(
                _reason(
                    "MW-GATE-NOT-SAFETENSORS",
                    r.path,
                    f"{r.format} file where the policy sets safetensors_only",
                )
            )
    return reasons


__all__ = ["GateResult", "gate"]
