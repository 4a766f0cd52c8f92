"""Process groups and signals of the services: ``group_alive`` (zombies do not count) and
``interruptible_children`` (services can be stopped with SIGINT wherever they were started)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quant_assets.production.stack import (
    ProductionStack,
    Service,
    group_alive,
    interruptible_children,
)


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


_PRINTS_SIGINT_IGNORED = [
    sys.executable,
    "-c",
    "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)",
]


@contextlib.contextmanager
def sigint_handled_by(handler: signal.Handlers | Callable) -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def sigint_ignored() -> Iterator[None]:
    """This process ignores SIGINT, as one started from a background shell does."""
    with sigint_handled_by(signal.SIG_IGN):
        yield


@pytest.fixture
def sigint_handled() -> Iterator[None]:
    """This process handles SIGINT, as Python does when started from a terminal."""
    with sigint_handled_by(signal.default_int_handler):
        yield


@pytest.mark.usefixtures("sigint_ignored")
def test_an_ignored_sigint_is_inherited_unless_children_are_started_interruptible() -> None:
    assert subprocess.check_output(_PRINTS_SIGINT_IGNORED, text=True).strip() == "True"
    with interruptible_children():
        assert subprocess.check_output(_PRINTS_SIGINT_IGNORED, text=True).strip() == "False"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # this process's own is restored


@pytest.mark.usefixtures("sigint_handled")
def test_interruptible_children_leave_a_handled_sigint_alone() -> None:
    with interruptible_children():
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert subprocess.check_output(_PRINTS_SIGINT_IGNORED, text=True).strip() == "False"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("sigint_ignored")
def test_the_stack_starts_its_services_interruptible(tmp_path: Path) -> None:
    """What ``start`` launches can be stopped with SIGINT even from a background shell."""
    stack = ProductionStack(tmp_path)
    stack.logs.mkdir()
    # What start has recorded by the time it launches a service (no server is contacted).
    stack._secrets_file.write_text(json.dumps({"server": "postgresql://u:p@127.0.0.1:9/postgres"}))
    stack._state_file.write_text(json.dumps({"ports": {"mlflow": 9}, "pids": {}}))
    stack._launch(Service("probe", _PRINTS_SIGINT_IGNORED, lambda: True))
    os.waitpid(stack.state()["pids"]["probe"], 0)
    assert (stack.logs / "probe.log").read_text().strip() == "False"
