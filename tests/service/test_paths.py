"""Server-side paths: only regular files inside --root, whatever the name or links say."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fixtures.pickles import call_system_p4
from fixtures.service_app import AUTH, make_settings, upload
from modelward.service.app import create_app
from modelward.service.settings import ServiceSettings


@pytest.fixture
def root(settings: ServiceSettings, tmp_path: Path) -> Path:
    """A root with a model, a folder, and links pointing in, out, and nowhere."""
    assert settings.root is not None
    root = settings.root
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.pkl").write_bytes(call_system_p4())
    (root / "sub").mkdir()
    (root / "sub" / "evil.pkl").write_bytes(call_system_p4())
    (root / "inside-link.pkl").symlink_to(root / "sub" / "evil.pkl")
    (root / "relative-link.pkl").symlink_to("sub/evil.pkl")
    (root / "out-link.pkl").symlink_to(outside / "secret.pkl")
    (root / "out-dir").symlink_to(outside)
    (root / "dotdot-link.pkl").symlink_to("../outside/secret.pkl")
    (root / "dangling-out.pkl").symlink_to(outside / "missing.pkl")
    (root / "dangling-in.pkl").symlink_to(root / "missing.pkl")
    (root / "loop").symlink_to(root / "loop")
    return root


def scan_path(client: TestClient, path: str, reference: str | None = None) -> tuple[int, str]:
    body = {"path": path} if reference is None else {"path": path, "reference": reference}
    response = client.post("/scans", json=body, headers=AUTH)
    return response.status_code, response.json().get("detail", "")


@pytest.mark.parametrize(
    "name",
    ["sub/evil.pkl", "./sub/evil.pkl", "sub//evil.pkl", "inside-link.pkl", "relative-link.pkl"],
)
def test_files_inside_the_root_are_scanned(client: TestClient, root: Path, name: str) -> None:
    assert scan_path(client, name)[0] == 201


@pytest.mark.parametrize(
    "name",
    [
        "../outside/secret.pkl",
        "sub/../../outside/secret.pkl",
        "sub/../evil.pkl",  # '..' is refused even when it would stay inside
        "/etc/passwd",
        "out-link.pkl",
        "out-dir/secret.pkl",
        "dotdot-link.pkl",
        "dangling-out.pkl",  # answered 403, like an existing target: nothing leaks
    ],
)
def test_anything_leading_outside_the_root_is_403(
    client: TestClient, root: Path, name: str
) -> None:
    status, detail = scan_path(client, name)
    assert status == 403 and "inside the server's root" in detail


@pytest.mark.parametrize("name", ["missing.pkl", "sub/missing.pkl", "dangling-in.pkl", "loop"])
def test_missing_files_under_the_root_are_404(client: TestClient, root: Path, name: str) -> None:
    assert scan_path(client, name)[0] == 404


@pytest.mark.parametrize("name", ["sub", ".", "", "sub/evil.pkl\x00.txt"])
def test_folders_empty_names_and_nul_bytes_are_400(
    client: TestClient, root: Path, name: str
) -> None:
    assert scan_path(client, name)[0] == 400


def test_reference_is_confined_like_the_path(client: TestClient, root: Path) -> None:
    assert scan_path(client, "sub/evil.pkl", reference="out-link.pkl")[0] == 403
    assert scan_path(client, "sub/evil.pkl", reference="missing.pkl")[0] == 404
    response = upload(client, call_system_p4(), "evil.pkl", reference="../outside/secret.pkl")
    assert response.status_code == 403


def test_no_root_means_uploads_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, root=None)
    with TestClient(create_app(settings)) as client:
        status, detail = scan_path(client, "anything.pkl")
        assert status == 400 and "--root" in detail
        response = upload(client, call_system_p4(), "evil.pkl", reference="ref.pkl")
        assert response.status_code == 400
        assert upload(client, call_system_p4(), "evil.pkl").status_code == 201


def test_root_reached_through_a_link_still_confines(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    real.mkdir()
    (real / "ok.pkl").write_bytes(call_system_p4())
    (tmp_path / "secret.pkl").write_bytes(call_system_p4())
    linked = tmp_path / "linked-root"
    linked.symlink_to(real)
    settings = make_settings(tmp_path, root=linked)
    with TestClient(create_app(settings)) as client:
        assert scan_path(client, "ok.pkl")[0] == 201
        assert scan_path(client, "../secret.pkl")[0] == 403
