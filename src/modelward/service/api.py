"""The JSON API: `POST /scans` (token), and public reads of scans, models and health.

Scanning is CPU-bound and synchronous, so it runs in the app's small thread pool
(`scans_per_worker` threads) while the event loop keeps receiving uploads and answering
reads; `serve --workers` adds processes for parallelism. A scan is bounded by the
scanner's own per-file time limit; its result and diff are written by the store in one
transaction, so a killed server leaves a whole scan event or none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam

from modelward.config import ScanConfig
from modelward.findings import ScanReport, ScanResult
from modelward.service.auth import require_token
from modelward.service.paths import resolve_under
from modelward.service.schemas import Health, ModelDetail, ModelList, Scan, ScanRequest
from modelward.service.uploads import received_upload, too_large

if TYPE_CHECKING:
    from modelward.store import ModelSummary, ResultStore, StoredScan

router = APIRouter()
log = logging.getLogger("modelward.service")

#: A JSON request body is a path and a reference: anything bigger is not one.
MAX_JSON_BYTES = 64 * 1024
DIGEST_PATTERN = "^[0-9a-fA-F]{64}$"
NOT_COMPARED = "not compared"


_SCAN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "the model file's bytes, streamed to disk (serve --max-upload-mb)",
            },
            "application/json": {"schema": ScanRequest.model_json_schema()},
        },
    }
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed request, or a server path without --root"},
    401: {"description": "missing or wrong bearer token"},
    403: {"description": "path or reference outside --root"},
    404: {"description": "path or reference not found under --root"},
    413: {"description": "upload over the size limit; nothing was kept"},
    415: {"description": "body neither application/octet-stream nor application/json"},
}


@router.post(
    "/scans",
    status_code=status.HTTP_201_CREATED,
    response_model=Scan,
    dependencies=[Depends(require_token)],
    openapi_extra=_SCAN_BODY,
    responses=_ERRORS,
    summary="Scan an uploaded file, or a file under --root (optionally diffed with a reference)",
)
async def create_scan(
    request: Request,
    response: Response,
    filename: Annotated[
        str | None, Query(description="uploads: the file's name, shown in results")
    ] = None,
    reference: Annotated[
        str | None, Query(description="uploads: a reference model under --root to diff against")
    ] = None,
) -> dict[str, Any]:
    settings = request.app.state.settings
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        if filename is not None or reference is not None:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail="with a JSON body, give path and reference in the body, not the query",
            )
        wanted = await _scan_request(request)
        path = resolve_under(settings.root, wanted.path)
        ref = _reference(settings.root, wanted.reference)
        stored = await _run_scan(request, path, wanted.path, ref)
    elif media_type == "application/octet-stream":
        ref = _reference(settings.root, reference)
        async with received_upload(
            request, request.app.state.spool, settings.max_upload_bytes, filename
        ) as upload:
            stored = await _run_scan(request, upload.path, upload.filename, ref, upload.sha256)
    else:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail="POST /scans takes the file as application/octet-stream, or"
            ' application/json {"path": ..., "reference": ...} for a file under --root',
        )
    body = scan_body(request, stored)
    response.headers["Location"] = body["links"]["self"]
    return body


async def _scan_request(request: Request) -> ScanRequest:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON_BYTES:
            raise too_large(MAX_JSON_BYTES)
    try:
        return ScanRequest.model_validate_json(bytes(data))
    except ValueError as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f'expected {{"path": "rel/path", "reference": "rel/ref" (optional)}}: {exc}',
        ) from exc


def _reference(root: Path | None, name: str | None) -> tuple[Path, str] | None:
    return None if name is None else (resolve_under(root, name, "reference"), name)


async def _run_scan(
    request: Request,
    path: Path,
    display: str,
    reference: tuple[Path, str] | None,
    sha256: str | None = None,
) -> StoredScan:
    state = request.app.state
    job = functools.partial(_scan, state.store, state.scan_config, path, display, reference, sha256)
    return await asyncio.get_running_loop().run_in_executor(state.scan_pool, job)


def _scan(
    store: ResultStore,
    config: ScanConfig,
    path: Path,
    display: str,
    reference: tuple[Path, str] | None,
    sha256: str | None,
) -> StoredScan:
    """Diff (when asked) and scan-or-reuse, recorded as one scan event; runs in the pool."""
    from modelward.runner import scan_and_record

    diff = _diff(reference[0], reference[1], path, display) if reference else None
    return scan_and_record(
        path, config, store, source="service", display=display, diff=diff, sha256=sha256
    )


@dataclass(frozen=True)
class ReferenceDiff:
    """A scan's diff against a reference, as the store keeps it and the API answers it."""

    #: `modelward diff`'s verdict, or `NOT_COMPARED` (the report's errors say why).
    verdict: str
    #: The reference as the client named it.
    reference: str
    #: What `modelward diff` reported, with the names the client used for both files.
    report: ScanReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reference": self.reference,
            "report": self.report.to_dict(),
        }


def _diff(reference: Path, ref_name: str, candidate: Path, display: str) -> dict[str, Any]:
    """What `modelward diff` says, with server paths replaced by the names the client used."""
    from modelward.modeldiff import DiffError, diff

    try:
        result = diff(reference, candidate)
        verdict, report = result.verdict, result.to_report()
    except Exception as exc:  # a reader bug on hostile bytes must not cost the scan itself
        if not isinstance(exc, DiffError | OSError):
            log.exception("diff of %s against %s failed", display, ref_name)
        verdict = NOT_COMPARED
        error = str(exc) if isinstance(exc, DiffError | OSError) else f"diff failed: {exc!r}"
        report = ScanReport([ScanResult(path=display, format="diff", errors=[error])])
    shown = report.renamed(((str(candidate), display), (str(reference), ref_name)))
    return ReferenceDiff(verdict, ref_name, shown).to_dict()


@router.get(
    "/scans/{scan_id}", response_model=Scan, responses={404: {"description": "no such scan"}}
)
def get_scan(request: Request, scan_id: str) -> dict[str, Any]:
    """One scan event: the result, the diff if a reference was given, and links."""
    stored = request.app.state.store.get_scan(scan_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no scan with id {scan_id!r}")
    return scan_body(request, stored)


@router.get(
    "/models",
    response_model=ModelList,
    summary="Every scanned model, newest first, with its latest verdicts",
)
def list_models(
    request: Request, limit: Annotated[int, Query(ge=1, le=5000)] = 500
) -> dict[str, Any]:
    models = request.app.state.store.models(limit=limit)
    return {"models": [_model_summary(request, m) for m in models]}


@router.get(
    "/models/{digest}",
    response_model=ModelDetail,
    responses={404: {"description": "nothing recorded for it"}},
)
def get_model(
    request: Request, digest: Annotated[str, PathParam(pattern=DIGEST_PATTERN)]
) -> dict[str, Any]:
    """A file by SHA-256: its latest scan in full, every scan event, and every verdict."""
    store = request.app.state.store
    digest = digest.lower()
    scans = store.scans_for_digest(digest)
    verdicts = store.verdicts_for_digest(digest)
    if not scans and not verdicts:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"nothing recorded for {digest}")
    return {
        "sha256": digest,
        "latest": scan_body(request, scans[0]) if scans else None,
        "scans": [_scan_event(request, s) for s in scans],
        "verdicts": [v.to_dict() for v in verdicts],
    }


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"description": "the store cannot be reached"}},
)
def healthz(request: Request) -> dict[str, Any]:
    """200 when the store answers a query; 503 otherwise."""
    from modelward import __version__
    from modelward.store import ruleset_version

    request.app.state.store.ping()  # StoreError: 503 (the app's error handler)
    return {"status": "ok", "version": __version__, "ruleset": ruleset_version()}


def scan_body(request: Request, stored: StoredScan) -> dict[str, Any]:
    """The JSON of one scan event, as `POST /scans` and `GET /scans/{id}` answer it."""
    return {
        **_scan_event(request, stored),
        "ruleset": stored.ruleset,
        "result": stored.result.to_dict(),
        "diff": stored.diff,
    }


def _scan_event(request: Request, stored: StoredScan) -> dict[str, Any]:
    top = stored.result.max_severity
    return {
        "id": stored.id,
        "sha256": stored.sha256,
        "path": stored.path,
        "scanned_at": stored.scanned_at.isoformat(),
        "source": stored.source,
        "cached": stored.cached,
        "max_severity": top.label if top is not None else None,
        "links": _links(request, stored.id, stored.sha256),
    }


def _links(request: Request, scan_id: str | None, digest: str) -> dict[str, str]:
    links = {"model": str(request.app.url_path_for("get_model", digest=digest))}
    if scan_id is not None:
        links["self"] = str(request.app.url_path_for("get_scan", scan_id=scan_id))
    return links


def _model_summary(request: Request, model: ModelSummary) -> dict[str, Any]:
    return {
        "sha256": model.sha256,
        "path": model.path,
        "format": model.format,
        "max_severity": model.max_severity.label if model.max_severity is not None else None,
        "last_scanned": model.last_scanned.isoformat(),
        "scans": model.scans,
        "signature": model.signature.to_dict() if model.signature else None,
        "lock": model.lock.to_dict() if model.lock else None,
        "links": _links(request, None, model.sha256),
    }
