"""Distributed scans: fan a scan's files out as Ray tasks (`modelward scan --ray`).

`ray` is an optional dependency (`pip install 'modelward[ray]'`), imported only
when a scan runs; see docs/distributed.md for what runs where.
"""

from __future__ import annotations

from modelward.distributed.ray_scan import RayConnectionError, scan_on_ray

__all__ = ["RayConnectionError", "scan_on_ray"]
