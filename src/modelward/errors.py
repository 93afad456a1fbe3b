"""The base of every error a user can act on.

`str(error)` is the whole message: the CLI prints it once, as `modelward: <message>`, and
exits 2 (`modelward.cli.main`). Each area keeps its own class (and its older base, such as
`ValueError` or `OSError`, so code that catches that still works):

- `modelward.config.ConfigError`: a config or policy file that cannot be used
- `modelward.store.errors.StoreError`: the results store cannot be opened, read or written
- `modelward.remote.http.RemoteError`: a remote model cannot be read (also an `OSError`)
- `modelward.hf_cache.HfCacheError`: a Hugging Face cache cannot be listed
- `modelward.integrity.errors.IntegrityError`: hashing, signing, verification, lock files
- `modelward.modeldiff.DiffError`: two models cannot be compared
- `modelward.provenance.bom.BomError`: a BOM or a requirements file cannot be built or read
- `modelward.distributed.ray_scan.RayConnectionError`: Ray is missing or unreachable
- `modelward.safe_loading.UnsafeModelError`: `safe_load` refused a file
"""

from __future__ import annotations


class ModelwardError(Exception):
    """An error with a message a user can act on; `str(error)` is that message."""
