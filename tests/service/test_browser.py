"""The web pages in a real headless browser: Debian's chromium driven by Playwright.

A real uvicorn server on a free loopback port serves the real app and a SQLite store;
the browser loads the index, types the token, uploads a malicious pickle through the
form's script and must land on the model page showing the critical finding. It also
catches what only a browser enforces: the CSP must let the page's own stylesheet and
script run (a wrong hash would silently unstyle the page) and report no violation.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from fixtures.pickles import call_system_p4
from fixtures.service_app import TOKEN, make_settings
from modelward.service.app import create_app

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The critical badge's colour in style.css (`--critical`), as the browser computes it.
CRITICAL_RED = "rgb(164, 22, 26)"


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; skipped when absent, unless CI requires it (then it is a failure)."""
    path = os.environ.get("MODELWARD_TEST_CHROMIUM", "/usr/bin/chromium")
    missing = None
    if not Path(path).is_file():
        missing = f"no chromium at {path} (set MODELWARD_TEST_CHROMIUM)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None:
        return path
    if os.environ.get("MODELWARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"MODELWARD_REQUIRE_SERVICES=1 but {missing}")
    pytest.skip(missing)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1:<free port>, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's dictConfig would close every logging handler in this
    # process, pytest's capture handlers included, and break the tests that run after.
    config = uvicorn.Config(
        create_app(make_settings(tmp_path)), log_config=None, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_upload_in_the_browser_shows_the_critical_finding(
    chromium: str, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    model = tmp_path / "evil.pkl"
    model.write_bytes(call_system_p4("true"))  # os.system('true'): harmless, and never loaded
    violations: list[str] = []  # script errors and CSP reports
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            page.on("pageerror", lambda error: violations.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    violations.append(message.text)
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            page.goto(f"{server}/")
            expect(page.locator("#models")).to_contain_text("Nothing scanned yet.")

            # A wrong token: the API refuses it, the form says so and stays on the index.
            page.fill("#token", "not-the-token")
            page.set_input_files("#file", str(model))
            page.click("#upload")
            expect(page.locator("#upload-status")).to_contain_text("HTTP 401")

            page.fill("#token", TOKEN)
            page.click("#upload")
            page.wait_for_url(re.compile(r"/ui/models/[0-9a-f]{64}$"))
            findings = page.locator("#findings table.findings")
            expect(findings).to_contain_text("critical")
            expect(findings).to_contain_text("MW-PICKLE-DANGEROUS-GLOBAL")
            expect(findings).to_contain_text("evil.pkl@")
            expect(findings).to_contain_text("os.system")
            badge = findings.locator(".sev-critical").first
            assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == CRITICAL_RED

            page.goto(f"{server}/")
            row = page.locator("#models tbody tr")
            expect(row).to_have_count(1)
            expect(row).to_contain_text("evil.pkl")
            expect(row).to_contain_text("critical")
            # The token survives navigation in this tab's sessionStorage and refills the field.
            expect(page.locator("#token")).to_have_value(TOKEN)
            row.locator("a").click()
            page.wait_for_url(re.compile(r"/ui/models/[0-9a-f]{64}$"))
            expect(page.locator("#scans tbody tr")).to_have_count(1)
        finally:
            browser.close()
    assert violations == []
