"""The web pages through the real app and store (`client`: tests/service/conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file

from fixtures.html_pages import (
    HOSTILE_ARGUMENT,
    HOSTILE_NAME,
    Page,
    assert_no_injected_markup,
    hostile_pickle,
    parse_page,
)
from fixtures.service_app import AUTH, upload
from modelward.findings import ScanReport
from modelward.report.html import render_html
from modelward.service import web
from modelward.service.settings import ServiceSettings
from modelward.store import ResultStore

FINDINGS_TABLE = re.compile(r'<table class="findings">.*?</table>', re.DOTALL)


def uploaded(client: TestClient, name: str, data: bytes) -> str:
    """Upload through the API, as the page's form does; the file's SHA-256."""
    response = upload(client, data, filename=name)
    assert response.status_code == 201, response.text
    digest: str = response.json()["sha256"]
    return digest


def page(client: TestClient, url: str, status: int = 200) -> Page:
    response = client.get(url)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert_locked_down(response.headers)
    parsed = parse_page(response.text)
    assert_no_injected_markup(parsed)
    [style] = parsed.styles
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in response.headers["content-security-policy"]
    return parsed


def assert_locked_down(headers: Mapping[str, str]) -> None:
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"


def store_of(client: TestClient) -> ResultStore:
    store: ResultStore = client.app.state.store  # type: ignore[attr-defined]
    return store


def test_empty_index_has_the_upload_form_and_only_the_upload_script(client: TestClient) -> None:
    index = page(client, "/")
    assert "Nothing scanned yet." in index.text
    assert [a["src"] for a in index.tags("script")] == ["/ui/upload.js"]
    inputs = {a["id"]: a["type"] for a in index.tags("input")}
    assert inputs == {"token": "password", "file": "file"}
    # No input has a name: a form submitted without the script sends nothing, token included.
    assert all("name" not in a for a in index.tags("input"))
    assert index.tags("button")[0]["type"] == "submit"


def test_upload_script_is_served_as_javascript(client: TestClient) -> None:
    response = client.get("/ui/upload.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert_locked_down(response.headers)
    assert "sessionStorage" in response.text
    assert "/scans?filename=" in response.text
    assert "innerHTML" not in response.text


def test_an_uploaded_pickle_is_listed_and_its_page_shows_the_critical_finding(
    client: TestClient,
) -> None:
    digest = uploaded(client, HOSTILE_NAME, hostile_pickle())
    index = page(client, "/")
    assert HOSTILE_NAME in index.text
    assert digest[:12] in index.text
    assert "critical" in index.text
    assert {"href": f"/ui/models/{digest}"} in index.tags("a")

    model = page(client, f"/ui/models/{digest}")
    assert digest in model.text
    assert "MW-PICKLE-DANGEROUS-GLOBAL" in model.text
    assert "AML.T0010.003" in model.text
    assert f"{HOSTILE_NAME}@14" in model.text
    assert HOSTILE_ARGUMENT in model.text  # the evidence, as text
    assert "No signature, lock or gate verdict recorded." in model.text


def test_the_model_page_uses_the_html_reports_findings_table(client: TestClient) -> None:
    digest = uploaded(client, HOSTILE_NAME, hostile_pickle())
    [scan] = store_of(client).scans_for_digest(digest)
    html = client.get(f"/ui/models/{digest}").text
    report = render_html(ScanReport([scan.result]))
    assert FINDINGS_TABLE.findall(html)[0] == FINDINGS_TABLE.findall(report)[0]


def test_every_scan_event_and_verdict_is_shown(client: TestClient) -> None:
    digest = uploaded(client, "first.pkl", hostile_pickle())
    uploaded(client, "second.pkl", hostile_pickle())
    store = store_of(client)
    store.record_verdict(digest, "second.pkl", "signature", True, "signed by ci@example.com")
    store.record_verdict(digest, "second.pkl", "lock", False, "digest differs from <the lock>")
    html = client.get(f"/ui/models/{digest}").text
    [events] = re.findall(r'<table class="scans">.*?</table>', html, re.DOTALL)
    rows = parse_page(events).tags("tr")[1:]
    assert len(rows) == 2
    events_text = parse_page(events).text
    assert "first.pkl" in events_text and "second.pkl" in events_text
    assert events_text.index("cached") < events_text.index("scanned")  # newest first
    model = page(client, f"/ui/models/{digest}")
    statuses = {(a.get("class"), a.get("title")) for a in model.tags("span") if a.get("title")}
    assert ("pass", "signed by ci@example.com") in statuses
    assert ("fail", "digest differs from <the lock>") in statuses
    index = page(client, "/")
    assert "passed" in index.text and "failed" in index.text


def test_a_scan_with_a_reference_shows_the_diff(
    client: TestClient, settings: ServiceSettings
) -> None:
    root = settings.root
    assert root is not None
    weights = {"fc.weight": np.zeros((4, 4), dtype=np.float32)}
    save_file(weights, str(root / "reference.safetensors"))
    save_file({**weights, "backdoor": np.ones(3, np.float32)}, str(root / "candidate.safetensors"))
    response = client.post(
        "/scans",
        json={"path": "candidate.safetensors", "reference": "reference.safetensors"},
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    model = page(client, f"/ui/models/{body['sha256']}")
    [diff] = [a for tag, a in model.elements if tag == "section" and a.get("id") == "diff"]
    assert diff is not None
    assert body["diff"]["verdict"] in model.text
    assert "reference.safetensors" in model.text
    assert "MW-DIFF-SUMMARY" in model.text
    assert "backdoor" in model.text


def test_no_diff_section_without_a_reference(client: TestClient) -> None:
    digest = uploaded(client, "plain.pkl", hostile_pickle())
    model = page(client, f"/ui/models/{digest}")
    assert not [a for tag, a in model.elements if tag == "section" and a.get("id") == "diff"]


def test_long_lists_are_cut_with_a_note(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "MAX_ROWS", 1)
    digest = uploaded(client, "old.pkl", hostile_pickle())
    uploaded(client, "new.pkl", hostile_pickle())
    uploaded(client, "other.pkl", b"not a model, but another digest")
    index = page(client, "/")
    assert len(index.tags("tr")) == 2  # the header and the newest model
    assert "Only the newest 1 models are listed" in index.text
    model = page(client, f"/ui/models/{digest}")
    assert "new.pkl" in model.text and "old.pkl" not in model.text
    assert "Older scan events not shown: 1;" in model.text


@pytest.mark.parametrize("digest", ["0" * 64, "not-a-digest", "A" * 64, "%3Cscript%3E"])
def test_unknown_or_malformed_digests_are_a_404_page(client: TestClient, digest: str) -> None:
    missing = page(client, f"/ui/models/{digest}", status=404)
    assert "No scan of a file with this SHA-256 is recorded." in missing.text
