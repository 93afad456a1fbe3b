"""A finding sink that caps repeats, so a crafted file cannot flood the report.

A header with a million malformed entries is one problem, not a million: the
first `cap` findings of each rule are kept and the rest are summarised once.
"""

from __future__ import annotations

from collections import Counter

from modelward.findings import Location, Severity
from modelward.formats.interface import ScanContext

#: Findings of one rule kept per scanned blob before the rest are summarised.
DEFAULT_CAP = 20


class CappedReporter:
    """Forwards to `ctx.report`, keeping at most `cap` findings per rule id."""

    def __init__(self, ctx: ScanContext, location: Location, cap: int = DEFAULT_CAP) -> None:
        self.ctx = ctx
        self.location = location
        self.cap = cap
        self._seen: Counter[str] = Counter()
        self._worst: dict[str, Severity] = {}

    def report(
        self,
        rule_id: str,
        severity: Severity,
        message: str,
        evidence: str | None = None,
        offset: int | None = None,
    ) -> None:
        self._seen[rule_id] += 1
        self._worst[rule_id] = max(severity, self._worst.get(rule_id, severity))
        if self._seen[rule_id] <= self.cap:
            self.ctx.report(rule_id, severity, self.location.at(offset), message, evidence)

    def count(self, rule_id: str) -> int:
        return self._seen[rule_id]

    def finish(self) -> None:
        """Report, once per rule, how many findings were left out."""
        for rule_id, seen in sorted(self._seen.items()):
            if seen > self.cap:
                self.ctx.report(
                    rule_id,
                    self._worst[rule_id],
                    self.location,
                    f"{seen - self.cap} more {rule_id} findings not listed ({seen} in all)",
                )
