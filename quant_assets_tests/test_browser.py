"""The Dagster UI in a real browser: the asset graph renders with the project's assets.

Starts ``dagster-webserver`` on a free 127.0.0.1 port with a throw-away ``DAGSTER_HOME`` and
``QUANT_HOME``, opens the global asset lineage (``/asset-groups``) in headless Debian Chromium
driven by Playwright (``/usr/bin/chromium``; Playwright's own browser downloads are never used),
expands every asset group (the UI's Alt+E shortcut), waits until every asset of
``quant_assets.definitions`` is drawn as a node, and keeps a screenshot,
``dagster_asset_graph.png``, in ``$QUANT_TEST_ARTIFACTS`` (default: the test's temporary
directory; never the source tree).

``make test`` installs Chromium when it is missing (``make browser``) and sets
``QUANT_REQUIRE_BROWSER=1``, so there a missing browser fails the test; a bare ``pytest``
without Chromium or Playwright skips it with the reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = Path(os.environ.get("QUANT_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT_NAME = "dagster_asset_graph.png"
REQUIRED_ASSETS = {"raw_bars", "corporate_actions", "adjusted_bars", "features", "labels"}
SERVER_START_TIMEOUT_S = 90
GRAPH_TIMEOUT_S = 60
# As root Chromium needs --no-sandbox; this machine has no internet, so everything that phones
# home is off (otherwise Chromium floods refused connections and fails Google look-ups).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # the webserver is on loopback; ignore any proxy in the environment
]
# Graph nodes in Dagster's UI: a collapsed asset group, and the name of an asset node (full and
# zoomed-out "minimal" nodes alike).
GROUP_NODE = '[aria-label="asset_group"]'
ASSET_NAME = '[class*="AssetNode_assetName"]'
ASSET_NAMES_JS = f"""() => Array.from(document.querySelectorAll('{ASSET_NAME}'))
    .map(e => e.innerText.trim()).filter(t => t.length > 0)"""


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("QUANT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (QUANT_REQUIRE_BROWSER=1; `make browser` installs Chromium)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_asset_names() -> set[str]:
    """The display name (last key part) of every asset the code location defines."""
    from quant_assets.definitions import defs

    keys = defs.resolve_asset_graph().get_all_asset_keys()
    return {key.path[-1] for key in keys}


@dataclass(frozen=True)
class Server:
    url: str
    log: Path


@pytest.fixture
def webserver(tmp_path: Path) -> Iterator[Server]:
    """``dagster-webserver`` for the project's code location on a free port."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # The instance has "seen" the first-visit community dialog, so it does not cover the graph.
    (dagster_home / ".nux").mkdir()
    (dagster_home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "QUANT_HOME": str(tmp_path / "quant_home"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    for name in ("QUANT_DATABASE_URL", "DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME", "DB_PORT"):
        env.pop(name, None)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "webserver.log"
    root = Path(__file__).resolve().parents[1]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
             "-m", "quant_assets.definitions"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_up(proc, url, log_path)
        yield Server(url, log_path)
    finally:
        _stop(proc)


def _wait_until_up(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with _NO_PROXY.open(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(
        f"dagster-webserver did not answer in {SERVER_START_TIMEOUT_S} s:\n{_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it and its code server), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]


@pytest.fixture
def browser_available() -> None:
    """Chromium and Playwright are there (checked before the webserver starts)."""
    _require(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require(False, "the playwright package is not installed (pip install -e '.[dev]')")


def test_asset_graph_renders_the_project_assets(
    browser_available: None, webserver: Server, tmp_path: Path
) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    expected = expected_asset_names()
    assert expected >= REQUIRED_ASSETS
    artifacts = Path(os.environ.get("QUANT_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / SCREENSHOT_NAME
    screenshot.unlink(missing_ok=True)
    deadline = time.monotonic() + GRAPH_TIMEOUT_S

    def left_ms() -> float:
        return max(1_000.0, (deadline - time.monotonic()) * 1_000)

    problem = ""
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            try:
                page.goto(f"{webserver.url}/asset-groups", timeout=left_ms())
                # With several groups the graph starts with them collapsed: wait for the first
                # node, then expand every group (the UI's Alt+E shortcut).
                page.wait_for_selector(f"{GROUP_NODE}, {ASSET_NAME}", timeout=left_ms())
                if page.locator(GROUP_NODE).count():
                    page.keyboard.press("Alt+KeyE")
                page.wait_for_function(
                    f"names => {{ const drawn = new Set(({ASSET_NAMES_JS})());"
                    " return names.every(n => drawn.has(n)); }",
                    arg=sorted(expected),
                    timeout=left_ms(),
                )
                page.wait_for_timeout(500)  # let the graph settle before the screenshot
            except PlaywrightError as err:
                problem = str(err).splitlines()[0]
            drawn = set(page.evaluate(ASSET_NAMES_JS))
            text = page.inner_text("body")[:1_500]
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    missing = expected - drawn
    assert not missing, (
        f"asset nodes not drawn: {sorted(missing)}; drawn: {sorted(drawn)}; {problem}\n"
        f"screenshot: {screenshot}\npage text:\n{text}\nwebserver log:\n{_tail(webserver.log)}"
    )
    assert screenshot.stat().st_size > 10_000
