"""200 concurrent uploads against the real `modelward serve --workers 2` on loopback: every
upload is answered 201 and has exactly one stored result (its own scan id, resolving through
`GET /scans/{id}` and the store, with the right digest; no duplicate row, none missing),
and the server keeps no upload body in its spool and no extra open files afterwards.

Small benign and malicious pickles made at test time, a quarter of them distinct so the
rest exercise the cache. Bounded: 200 uploads, a hard limit of `HARD_TIMEOUT` seconds.
`python bench/load.py` runs the same load with other sizes and counts (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load

COUNT = 200
HARD_TIMEOUT = 60.0


def test_200_concurrent_uploads_each_get_exactly_one_stored_result(tmp_path: Path) -> None:
    uploads = load.make_uploads(COUNT, distinct=COUNT // 4, seed=7)
    summary, problems = load.run(
        f"sqlite:///{tmp_path / 'results.db'}",
        tmp_path,
        uploads,
        workers=2,
        concurrency=COUNT,
        timeout=HARD_TIMEOUT,
    )
    print(
        f"{COUNT} uploads: p50 {summary.p50 * 1000:.0f} ms, p99 {summary.p99 * 1000:.0f} ms, "
        f"{summary.throughput:.1f}/s, {summary.cached} cached; server group "
        f"{summary.before} -> {summary.after} (open files, MiB resident)"
    )
    assert problems == []
    assert summary.accepted == COUNT
    # Repeats queued behind the first scan of their bytes reuse its result.
    assert summary.cached > 0
