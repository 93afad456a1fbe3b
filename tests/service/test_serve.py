"""`modelward serve`: settings through the environment, option checks, and the real server."""

from __future__ import annotations

import os
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
from modelward.cli.serve import _token, tcp_listener
from modelward.service.settings import SETTINGS_ENV, TOKEN_ENV, ServiceSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load  # the load harness: its Server runs `modelward serve` in its own process group

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


def test_address_in_use_is_exit_2(tmp_path: Path) -> None:
    # A real process: uvicorn configures logging with dictConfig, which closes every logging
    # handler of the process it runs in (pytest's own capture handlers included).
    env = {**os.environ, TOKEN_ENV: "t", "TMPDIR": str(tmp_path)}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        store = f"sqlite:///{tmp_path / 'x.db'}"
        # Two workers: the supervisor binds before starting any, so this fails fast.
        serve = ["serve", "--port", port, "--workers", "2", "--store", store]
        done = subprocess.run(
            [sys.executable, "-m", "modelward", *serve],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
    assert done.returncode == EXIT_ERROR
    assert f"could not serve on 127.0.0.1:{port}" in done.stderr


def test_workers_share_a_tcp_socket_so_accepted_connections_get_nodelay() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; uvicorn binds
    # its workers' socket with protocol 0, which cost ~40 ms per kept-alive request.
    import uvicorn

    config = uvicorn.Config("x:app", host="127.0.0.1", port=0, workers=2, log_config=None)
    with tcp_listener(config) as listener:
        assert listener.proto == socket.IPPROTO_TCP
        assert listener.getsockname()[0] == "127.0.0.1"


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


class RootedServer(load.Server):
    """The load harness's server (its own process group, loopback, token in the environment)
    with a --root, so that path scans go through the real processes too."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(f"sqlite:///{workdir / 'served.db'}", workdir, workers=2)
        self.root = workdir / "root"
        self.root.mkdir()

    def argv(self) -> list[str]:
        return [*super().argv(), "--root", str(self.root)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RootedServer]:
    server = RootedServer(tmp_path)
    (server.root / "evil.pkl").write_bytes(call_system_p4())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def group_command_lines(group: int) -> list[bytes]:
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getpgid(int(proc.name)) == group:
                lines.append((proc / "cmdline").read_bytes())
        except (OSError, ProcessLookupError):
            continue
    return lines


def test_real_server_with_two_workers(server: RootedServer) -> None:
    assert server.process is not None
    group = server.process.pid
    spools = server.tmpdir / f"modelward-serve-{os.getuid()}"
    deadline = time.monotonic() + START_TIMEOUT  # /healthz answered: one worker is up, maybe two
    while len(list(spools.glob("spool-*.lock"))) < 2:
        assert time.monotonic() < deadline, server.tail()
        time.sleep(0.05)

    response = httpx.post(
        f"{server.url}/scans?filename=evil.pkl",
        content=call_system_p4(),
        headers={**server.headers, "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    assert response.json()["max_severity"] == "critical"
    by_path = httpx.post(
        f"{server.url}/scans", json={"path": "evil.pkl"}, headers=server.headers, timeout=60
    )
    assert by_path.status_code == 201 and by_path.json()["cached"] is True
    outside = httpx.post(
        f"{server.url}/scans", json={"path": "../serve.log"}, headers=server.headers, timeout=60
    )
    assert outside.status_code == 403
    unauthorised = httpx.post(f"{server.url}/scans", json={"path": "evil.pkl"}, timeout=10)
    assert unauthorised.status_code == 401
    scan = httpx.get(f"{server.url}{response.json()['links']['self']}", timeout=10).json()
    assert scan["id"] == response.json()["id"]
    assert "critical" in httpx.get(f"{server.url}/", timeout=10).text

    commands = group_command_lines(group)
    assert len(commands) >= 3, commands  # the supervisor and two workers
    assert all(server.token.encode() not in command for command in commands)

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=40) == 0, server.tail()
    assert list(spools.glob("spool-*")) == []  # each worker removed its spool on the way out
