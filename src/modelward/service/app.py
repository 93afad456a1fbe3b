"""`create_app(settings)`: the FastAPI application behind `modelward serve`.

One app per server process: it opens the store, a small scan thread pool and its own
upload spool (sweeping spools that dead processes left behind), and closes them on
shutdown. `app_from_env` is the factory uvicorn calls in each `--workers` process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from modelward import __version__
from modelward.config import ScanConfig
from modelward.service import api, web
from modelward.service.settings import ServiceSettings
from modelward.service.uploads import UploadSpool

log = logging.getLogger("modelward.service")

DESCRIPTION = """\
Static scans of model files, stored by SHA-256 and rule-set version.

`POST /scans` needs `Authorization: Bearer <token>`; every `GET` is public (bind to
loopback, the default, or put an authenticating proxy in front). See docs/service.md.
"""


def create_app(settings: ServiceSettings) -> FastAPI:
    """The app for one server process; raises if the store cannot be opened."""
    from modelward.store import open_store

    store = open_store(settings.store_url)
    spool = UploadSpool(settings.spool_dir)
    pool = ThreadPoolExecutor(settings.scans_per_worker, thread_name_prefix="modelward-scan")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            spool.close()
            store.close()

    # No /docs or /redoc: they load Swagger UI / ReDoc scripts from a CDN into this origin,
    # where a user types the write token. /openapi.json is served for any viewer.
    app = FastAPI(
        title="modelward",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.spool = spool
    app.state.scan_pool = pool
    app.state.scan_config = ScanConfig()
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(api.router)
    app.include_router(web.router)
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory (`factory=True`): settings from the environment `serve` prepared."""
    return create_app(ServiceSettings.from_env())


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Unexpected failures answer JSON like every other error; the traceback goes to the log.

    A store that cannot be read or written is 503 (its message is safe to show: no password).
    """
    from modelward.store.errors import StoreError

    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    if isinstance(exc, StoreError):
        return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)
    return JSONResponse(
        {"detail": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500
    )
