"""The service's web pages: the index of scanned models with an upload form, and a page per model.

They render the HTML report's templates (one findings table for both) from the
app's `ResultStore`. Everything shown comes from scanned files or the store, so
pages are autoescaped and served under a Content-Security-Policy that allows no
inline script: the upload form's script is `GET /ui/upload.js`, the only script the
pages load, and the inline stylesheet is allowed by its hash.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from modelward.findings import ScanResult
from modelward.report.html import environment, style_source

if TYPE_CHECKING:
    from modelward.store import ResultStore, StoredScan
    from modelward.store.records import CheckVerdict

#: What a model page's `{digest}` must look like: a SHA-256 in lower-case hex.
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

#: Rows a page shows at most (models, scan events); the JSON API lists more.
MAX_ROWS = 500

router = APIRouter(include_in_schema=False)


@cache
def content_security_policy() -> str:
    """Scripts only from this origin (the upload script), the stylesheet by hash, fetch to self."""
    return (
        "default-src 'none'; script-src 'self'; "
        f"style-src {style_source()}; connect-src 'self'; img-src 'self'; "
        "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


def security_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    """Every scanned model, newest first, with its signature and lock status."""
    models = _store(request).models(limit=MAX_ROWS + 1)
    return _page(
        "index.html.j2",
        models=models[:MAX_ROWS],
        more=len(models) > MAX_ROWS,
        scans_url=f"{request.base_url}scans",
    )


@router.get("/ui/models/{digest}", response_class=HTMLResponse)
def model_page(request: Request, digest: str) -> HTMLResponse:
    """The latest scan's findings, its diff when it has one, every scan event and verdict."""
    digest = digest.lower()
    store = _store(request)
    scans = store.scans_for_digest(digest) if SHA256_HEX.fullmatch(digest) else []
    if not scans:
        return _page(
            "message.html.j2",
            status_code=404,
            heading="Model not found",
            text="No scan of a file with this SHA-256 is recorded.",
        )
    verdicts = store.verdicts_for_digest(digest)
    latest = scans[0]
    return _page(
        "model.html.j2",
        latest=latest,
        scans=scans[:MAX_ROWS],
        older=len(scans) - len(scans[:MAX_ROWS]),
        verdicts=verdicts,
        signature=_latest(verdicts, "signature"),
        lock=_latest(verdicts, "lock"),
        diff=_diff_view(latest),
    )


@router.get("/ui/upload.js")
def upload_script() -> Response:
    return Response(
        _upload_script(), media_type="text/javascript; charset=utf-8", headers=security_headers()
    )


def _store(request: Request) -> ResultStore:
    store: ResultStore = request.app.state.store
    return store


def _page(template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(csp=None, **context)
    return HTMLResponse(html, status_code=status_code, headers=security_headers())


def _latest(verdicts: list[CheckVerdict], kind: str) -> CheckVerdict | None:
    """The newest verdict of `kind` (`verdicts` are newest first)."""
    return next((v for v in verdicts if v.kind == kind), None)


def _diff_view(scan: StoredScan) -> dict[str, Any] | None:
    """The stored diff (`verdict`, `reference`, `report`), its findings rebuilt for the table."""
    if not scan.diff:
        return None
    results = scan.diff.get("report", {}).get("results", [])
    findings = [f for r in results for f in ScanResult.from_dict(r).findings]
    return {
        "verdict": scan.diff.get("verdict", ""),
        "reference": scan.diff.get("reference", ""),
        "findings": findings,
    }


@cache
def _upload_script() -> str:
    return resources.files("modelward.report").joinpath("templates", "upload.js").read_text("utf-8")
