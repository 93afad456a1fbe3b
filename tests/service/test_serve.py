"""`modelward serve`: settings through the environment, option checks, and the real server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.pickles import call_system_p4
from modelward.cli.main import EXIT_ERROR, main
from modelward.cli.serve import _token
from modelward.service.settings import SETTINGS_ENV, TOKEN_ENV, ServiceSettings

START_TIMEOUT = 60.0


def test_settings_round_trip_through_the_environment(tmp_path: Path) -> None:
    settings = ServiceSettings(
        store_url="sqlite:///x.db",
        token="t0ken",
        host="::1",
        port=8123,
        root=tmp_path,
        workers=3,
        scans_per_worker=2,
        max_upload_bytes=1000,
        spool_dir=tmp_path / "spool",
    )
    env = settings.to_env()
    assert ServiceSettings.from_env(env) == settings
    assert "t0ken" not in env[SETTINGS_ENV] and env[TOKEN_ENV] == "t0ken"
    assert "t0ken" not in repr(settings)
    no_root = ServiceSettings(store_url="sqlite://", token="t")
    assert ServiceSettings.from_env(no_root.to_env()) == no_root
    with pytest.raises(RuntimeError, match=TOKEN_ENV):
        ServiceSettings.from_env({SETTINGS_ENV: env[SETTINGS_ENV]})
    with pytest.raises(ValueError, match="token"):
        ServiceSettings(store_url="sqlite://", token="")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "add --public"),
        (["--host", "192.168.1.10"], "add --public"),
        (["--root", "does-not-exist"], "not a folder"),
        (["--port", "70000"], "not a TCP port"),
        (["--store", "sqlite:///{tmp}/a-file/x.db"], "store sqlite:"),
    ],
)
def test_options_serve_cannot_start_with_are_exit_2(
    args: list[str],
    message: str,
    tmp_path: Path,
    never_serve: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["serve", *(a.format(tmp=tmp_path) for a in args)]) == EXIT_ERROR
    assert message in capsys.readouterr().err


@pytest.fixture
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail instead of serving forever should `serve` start where a test expects a refusal."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve started uvicorn")

    monkeypatch.setattr("uvicorn.run", refuse)


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--workers", "0"])
    assert exited.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_token_comes_from_the_file_then_the_environment_then_is_generated(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    never_serve: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    token_file.chmod(0o600)
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert _token(token_file) == "from-file"
    assert _token(None) == "from-env"
    monkeypatch.delenv(TOKEN_ENV)
    generated = _token(None)
    assert len(generated) >= 40 and generated in capsys.readouterr().err
    token_file.chmod(0o644)
    _token(token_file)
    assert "readable by other users" in capsys.readouterr().err
    token_file.write_text("  \n")
    assert main(["serve", "--token-file", str(token_file)]) == EXIT_ERROR
    assert "is empty" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`modelward serve --workers 2` on a free loopback port, with a generated token."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil.pkl").write_bytes(call_system_p4())
    log = tmp_path / "serve.log"
    env = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
    env["TMPDIR"] = str(tmp_path)
    port = free_port()
    argv = [sys.executable, "-m", "modelward", "serve", "--workers", "2", "--port", str(port)]
    argv += ["--root", str(root), "--store", f"sqlite:///{tmp_path / 'served.db'}"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no /healthz:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url, process, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def group_command_lines(group: int) -> list[bytes]:
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getpgid(int(proc.name)) == group:
                lines.append((proc / "cmdline").read_bytes())
        except (OSError, ProcessLookupError):
            continue
    return lines


def test_real_server_with_two_workers(
    server: tuple[str, subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    url, process, log = server
    match = re.search(r"write token for this run \(POST /scans\): (\S+)", log.read_text())
    assert match, log.read_text()
    token = match.group(1)
    auth = {"Authorization": f"Bearer {token}"}

    response = httpx.post(
        f"{url}/scans?filename=evil.pkl",
        content=call_system_p4(),
        headers={**auth, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    assert response.json()["max_severity"] == "critical"
    by_path = httpx.post(f"{url}/scans", json={"path": "evil.pkl"}, headers=auth, timeout=60)
    assert by_path.status_code == 201 and by_path.json()["cached"] is True
    unauthorised = httpx.post(f"{url}/scans", json={"path": "evil.pkl"}, timeout=10)
    assert unauthorised.status_code == 401
    assert (
        httpx.get(f"{url}{response.json()['links']['self']}").json()["id"] == response.json()["id"]
    )
    assert "critical" in httpx.get(f"{url}/").text

    commands = group_command_lines(process.pid)
    assert len(commands) >= 3  # the supervisor and two workers (and maybe a tracker)
    assert all(token.encode() not in command for command in commands)
    assert len(list(tmp_path.glob(f"modelward-serve-{os.getuid()}/spool-*.lock"))) == 2

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=40) == 0, log.read_text()
    assert list(tmp_path.glob(f"modelward-serve-{os.getuid()}/spool-*")) == []
