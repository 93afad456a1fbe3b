"""The JSON API against a real SQLite store: uploads, caching, auth, limits, reads, OpenAPI."""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file

from fixtures.pickles import call_system_p4
from fixtures.service_app import AUTH, TOKEN, UPLOAD_LIMIT, make_settings, spool_files, upload
from modelward.service.app import create_app
from modelward.service.settings import ServiceSettings
from modelward.store import open_store


def stored_digests(settings: ServiceSettings) -> set[str]:
    with open_store(settings.store_url) as store:
        return {m.sha256 for m in store.models()}


def safetensors_bytes(tmp_path: Path, name: str, **tensors: np.ndarray) -> Path:
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def test_malicious_upload_is_critical_stored_and_then_cached(client: TestClient) -> None:
    payload = call_system_p4()
    first = upload(client, payload, "evil.pkl")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["sha256"] == hashlib.sha256(payload).hexdigest()
    assert body["max_severity"] == "critical" and body["cached"] is False
    assert body["path"] == "evil.pkl" and body["source"] == "service"
    assert body["diff"] is None
    findings = body["result"]["findings"]
    assert any(f["severity"] == "critical" and "os" in (f["evidence"] or "") for f in findings)
    assert all(f["location"]["path"] == "evil.pkl" for f in findings)  # never the temp path
    assert first.headers["location"] == body["links"]["self"] == f"/scans/{body['id']}"

    again = upload(client, payload, "copy.pkl")
    assert again.status_code == 201
    assert again.json()["cached"] is True and again.json()["id"] != body["id"]
    assert again.json()["max_severity"] == "critical"

    fetched = client.get(body["links"]["self"])
    assert fetched.status_code == 200 and fetched.json() == body
    model = client.get(body["links"]["model"]).json()
    assert [s["id"] for s in model["scans"]] == [again.json()["id"], body["id"]]
    assert model["latest"]["path"] == "copy.pkl" and model["verdicts"] == []
    [summary] = client.get("/models").json()["models"]
    assert summary["sha256"] == body["sha256"] and summary["scans"] == 2
    assert summary["max_severity"] == "critical"


def test_benign_upload_has_no_finding_above_info(client: TestClient, tmp_path: Path) -> None:
    path = safetensors_bytes(tmp_path, "ok.safetensors", w=np.ones((3, 4), dtype=np.float32))
    response = upload(client, path.read_bytes(), "ok.safetensors")
    assert response.status_code == 201
    assert response.json()["result"]["format"] == "safetensors"
    assert response.json()["max_severity"] in (None, "info")


def test_upload_without_filename_gets_a_neutral_name(client: TestClient) -> None:
    response = upload(client, call_system_p4(), filename=None)
    assert response.status_code == 201 and response.json()["path"] == "upload"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "longer", "not-bearer", "empty"],
)
def test_write_needs_the_token_and_stores_nothing_without_it(
    settings: ServiceSettings, client: TestClient, headers: dict[str, str]
) -> None:
    for response in (
        client.post(
            "/scans?filename=evil.pkl",
            content=call_system_p4(),
            headers={"Content-Type": "application/octet-stream", **headers},
        ),
        client.post("/scans", json={"path": "anything"}, headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in response.json()["detail"]
    assert stored_digests(settings) == set()
    assert spool_files(settings) == []


def test_upload_over_the_declared_limit_is_refused_before_reading(
    settings: ServiceSettings, client: TestClient
) -> None:
    response = upload(client, b"\0" * (UPLOAD_LIMIT + 1), "big.bin")
    assert response.status_code == 413
    assert str(UPLOAD_LIMIT) in response.json()["detail"]
    assert spool_files(settings) == [] and stored_digests(settings) == set()


def test_chunked_upload_over_the_limit_is_cut_off_and_deleted(
    settings: ServiceSettings, client: TestClient
) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: only the running count can stop it
        for _ in range(UPLOAD_LIMIT // 4096 + 64):
            sent.append(4096)
            yield b"\x80\x04" + b"\0" * 4094

    response = upload(client, chunks(), "big.pkl")
    assert response.status_code == 413
    assert spool_files(settings) == [] and stored_digests(settings) == set()
    # The limit itself is accepted.
    assert upload(client, b"\0" * UPLOAD_LIMIT, "exact.bin").status_code == 201


def test_other_content_types_are_415(client: TestClient) -> None:
    response = client.post("/scans", content=b"x", headers={**AUTH, "Content-Type": "text/plain"})
    assert response.status_code == 415 and "octet-stream" in response.json()["detail"]


@pytest.mark.parametrize(
    "body", [b"{", b'{"path": 3}', b'{"path": "a", "extra": 1}', b"[]"], ids=str
)
def test_malformed_json_body_is_400(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/scans", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "path" in response.json()["detail"]


def test_json_scan_of_a_file_under_root(settings: ServiceSettings, client: TestClient) -> None:
    assert settings.root is not None
    (settings.root / "models").mkdir()
    (settings.root / "models" / "evil.pkl").write_bytes(call_system_p4())
    response = client.post("/scans", json={"path": "models/evil.pkl"}, headers=AUTH)
    assert response.status_code == 201
    assert response.json()["path"] == "models/evil.pkl"
    assert response.json()["max_severity"] == "critical"
    assert str(settings.root) not in response.text


def test_reference_diff_of_two_safetensors(settings: ServiceSettings, client: TestClient) -> None:
    assert settings.root is not None
    weights = {"fc.weight": np.eye(4, dtype=np.float32), "fc.bias": np.zeros(4, np.float32)}
    safetensors_bytes(settings.root, "base.safetensors", **weights)
    spliced = {**weights, "trigger.weight": np.ones((4, 4), dtype=np.float32)}
    candidate = safetensors_bytes(settings.root, "cand.safetensors", **spliced)

    response = upload(
        client, candidate.read_bytes(), "cand.safetensors", reference="base.safetensors"
    )
    assert response.status_code == 201, response.text
    diff = response.json()["diff"]
    assert diff["verdict"] == "architecture changed" and diff["reference"] == "base.safetensors"
    [result] = diff["report"]["results"]
    messages = " ".join(f["message"] for f in result["findings"])
    assert "trigger.weight" in messages
    assert {f["location"]["path"] for f in result["findings"]} == {"cand.safetensors"}
    # Neither the server's root nor the upload's temp path leaks into the answer.
    assert str(settings.root) not in response.text and str(settings.spool_dir) not in response.text
    assert client.get(response.json()["links"]["self"]).json()["diff"] == diff

    same = client.post(
        "/scans", json={"path": "base.safetensors", "reference": "base.safetensors"}, headers=AUTH
    )
    assert same.json()["diff"]["verdict"] == "identical"


def test_reference_that_cannot_be_compared_still_records_the_scan(
    settings: ServiceSettings, client: TestClient
) -> None:
    assert settings.root is not None
    safetensors_bytes(settings.root, "base.safetensors", w=np.ones(2, dtype=np.float32))
    response = upload(client, call_system_p4(), "evil.pkl", reference="base.safetensors")
    assert response.status_code == 201
    body = response.json()
    assert body["max_severity"] == "critical"
    assert body["diff"]["verdict"] == "not compared"
    [result] = body["diff"]["report"]["results"]
    assert result["errors"] and str(settings.spool_dir) not in response.text


def test_reads_are_answered_while_a_scan_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan runs in the pool, not on the event loop: /healthz answers in the meantime."""
    import modelward.runner

    release = threading.Event()
    scanning = threading.Event()
    real = modelward.runner.scan_and_record

    def held(*args: Any, **kwargs: Any) -> Any:
        scanning.set()
        release.wait(30)  # a scan that takes as long as the test needs
        return real(*args, **kwargs)

    monkeypatch.setattr(modelward.runner, "scan_and_record", held)
    slow = pickle.dumps(list(range(1000)), protocol=2)
    settings = make_settings(tmp_path, max_upload_bytes=len(slow))
    with TestClient(create_app(settings)) as client, ThreadPoolExecutor(1) as background:
        pending = background.submit(upload, client, slow, "slow.pkl")
        assert scanning.wait(30), "the scan never started"
        assert client.get("/healthz").status_code == 200
        assert client.get("/models").json() == {"models": []}
        assert not pending.done()  # the scan is still running
        release.set()
        assert pending.result().status_code == 201


def test_unknown_ids_and_digests_are_404_and_malformed_digests_422(client: TestClient) -> None:
    assert client.get("/scans/" + "0" * 32).status_code == 404
    assert "no scan" in client.get("/scans/nope").json()["detail"]
    assert client.get("/models/" + "a" * 64).status_code == 404
    assert client.get("/models/not-a-digest").status_code == 422
    assert client.get("/no-such-endpoint").json() == {"detail": "Not Found"}


def test_healthz_reports_the_ruleset(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and "+" in response.json()["ruleset"]


def test_healthz_is_503_when_the_store_is_gone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        (tmp_path / "service.db").unlink()
        client.app.state.store.close()  # type: ignore[attr-defined]
        (tmp_path / "service.db").mkdir()  # a reconnect now finds no database file
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("store unavailable")


def test_reads_are_public_and_the_openapi_document_describes_auth_and_bodies(
    client: TestClient,
) -> None:
    doc = client.get("/openapi.json").json()
    scheme = doc["components"]["securitySchemes"]["HTTPBearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    post = doc["paths"]["/scans"]["post"]
    assert post["security"] == [{"HTTPBearer": []}]
    content = post["requestBody"]["content"]
    assert content["application/octet-stream"]["schema"]["format"] == "binary"
    assert "path" in content["application/json"]["schema"]["properties"]
    assert {"401", "403", "413"} <= set(post["responses"])
    created = post["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/Scan"}
    scan = doc["components"]["schemas"]["Scan"]
    assert {"id", "sha256", "cached", "max_severity", "result", "diff", "links"} <= set(
        scan["required"]
    )
    assert set(doc["components"]["schemas"]["ScanLinks"]["properties"]) == {"self", "model"}
    for path in ("/scans/{scan_id}", "/models/{digest}", "/models", "/healthz"):
        assert "security" not in doc["paths"][path]["get"]
    # No Swagger UI / ReDoc: they would load third-party scripts next to the token.
    assert client.get("/docs").status_code == client.get("/redoc").status_code == 404


def test_upload_to_postgres_end_to_end(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, store_url=postgres_url)
    with TestClient(create_app(settings)) as client:
        first = upload(client, call_system_p4("id"), "evil.pkl")
        again = upload(client, call_system_p4("id"), "evil.pkl")
        assert first.status_code == again.status_code == 201
        assert first.json()["max_severity"] == "critical"
        assert (first.json()["cached"], again.json()["cached"]) == (False, True)
        assert client.get("/healthz").status_code == 200
        model = client.get(first.json()["links"]["model"]).json()
        assert len(model["scans"]) == 2
