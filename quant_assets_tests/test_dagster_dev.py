"""``make dagster-dev`` stops on Ctrl-C within seconds (``scripts/dagster-dev``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from quant_assets.production.stack import group_alive, interruptible_children

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 150
STOP_WITHIN_S = 10
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _still_running(pgid: int, within_s: float = 3.0) -> bool:
    """Whether the group still runs a process ``within_s`` after the script ended.

    A process SIGKILLed a moment ago may still be exiting.
    """
    deadline = time.monotonic() + within_s
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_stops_dagster_dev_within_seconds(tmp_path: Path) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.sqlite.yaml").read_text())
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "QUANT_HOME": str(tmp_path / "quant")}
    dagster = str(Path(sys.executable).with_name("dagster"))
    log = (tmp_path / "dagster-dev.log").open("wb")
    command = [dagster, "dev", "-m", "quant_assets.definitions", "-h", "127.0.0.1"]
    with interruptible_children():  # as from a terminal, even when pytest runs in the background
        script = subprocess.Popen(
            [str(REPO / "scripts" / "dagster-dev"), *command, "-p", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the script's own group, as a terminal's foreground job
        )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(port):
            assert script.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "dagster dev did not answer in time"
            time.sleep(1)
        children = {
            int(p) for p in subprocess.check_output(["pgrep", "-P", str(script.pid)]).split()
        }
        began = time.monotonic()
        os.killpg(script.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        script.wait(timeout=STOP_WITHIN_S + 5)
        stopped_after = time.monotonic() - began
        assert stopped_after <= STOP_WITHIN_S
        assert not any(_still_running(pgid) for pgid in children), "processes left behind"
        assert not answers(port)
    finally:
        # The script's child runs in its own group: a failed stop must not leave it behind.
        for pgid in [script.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        log.close()
