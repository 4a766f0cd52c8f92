"""``group_alive``: a group is alive while one of its processes runs; zombies do not count."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from quant_assets.production.stack import group_alive


def test_a_running_group_is_alive_and_a_killed_unreaped_one_is_not() -> None:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        assert group_alive(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        # Not reaped yet: the process stays in its group as a zombie.
        while Path(f"/proc/{proc.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not group_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert not group_alive(proc.pid)


def test_a_group_that_never_was_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not group_alive(proc.pid)
