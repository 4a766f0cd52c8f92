"""Shared by the browser tests: Debian's Chromium under Playwright, and the servers they open
(``dagster-webserver``, ``mlflow ui``) as child processes on free 127.0.0.1 ports.

``make test`` installs Chromium when it is missing (``make browser``) and sets
``QUANT_REQUIRE_BROWSER=1``, so there a missing browser fails; a bare ``pytest`` without
Chromium or Playwright skips with the reason. Screenshots go to ``$QUANT_TEST_ARTIFACTS``
(``make test``: ``test-artifacts/``, ignored by git; otherwise the test's temporary directory).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("QUANT_CHROMIUM", "/usr/bin/chromium"))
SERVER_START_TIMEOUT_S = 120
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
    "--no-proxy-server",  # the servers are on loopback; ignore any proxy in the environment
]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
# Settings of the developer's shell that must not reach a test's servers.
FOREIGN_ENV = ("QUANT_DATABASE_URL", "DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME", "DB_PORT")


def require(condition: bool, reason: str) -> None:
    """Skip (or, under ``QUANT_REQUIRE_BROWSER=1``, fail) when ``condition`` is false."""
    if condition:
        return
    if os.environ.get("QUANT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (QUANT_REQUIRE_BROWSER=1; `make browser` installs Chromium)")
    pytest.skip(reason)


def require_browser() -> None:
    """Chromium and Playwright are there."""
    require(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "the playwright package is not installed (pip install -e '.[dev]')")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir(fallback: Path) -> Path:
    """Where screenshots go (``$QUANT_TEST_ARTIFACTS`` or ``fallback``), created."""
    folder = Path(os.environ.get("QUANT_TEST_ARTIFACTS") or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The process environment without the shell's database settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    return {**env, "DAGSTER_DISABLE_TELEMETRY": "1", **extra}


@dataclass(frozen=True)
class Server:
    url: str
    log: Path


@contextlib.contextmanager
def serve(
    command: Sequence[str], port: int, env: Mapping[str, str], log_path: Path, ready_path: str
) -> Iterator[Server]:
    """Run ``command`` (in its own process group) until ``ready_path`` answers 200; stop it and
    every child on exit."""
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(command), cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_up(proc, f"{url}{ready_path}", log_path)
        yield Server(url, log_path)
    finally:
        stop(proc)


def wait_until_up(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            with NO_PROXY.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {SERVER_START_TIMEOUT_S} s:\n{tail(log_path)}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it and its children), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def chromium(profile: Path, width: int = 1920, height: int = 1080) -> Iterator[Any]:
    """A page of headless Debian Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
