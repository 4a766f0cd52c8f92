"""The one ``Definitions``: how its launched runs execute their steps (QUANT_STEP_EXECUTOR)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from quant_assets.definitions import defs

REPO = Path(__file__).resolve().parents[1]
JOBS = ("nightly_retraining", "ingest_raw_bars", "live_monitoring", "evaluate")


def test_launched_runs_execute_their_steps_in_the_run_process_by_default() -> None:
    assert {defs.resolve_job_def(job).executor_def.name for job in JOBS} == {"in_process"}
    asset_job = defs.resolve_implicit_global_asset_job_def()  # what an asset page launches
    assert asset_job.executor_def.name == "in_process"


def test_the_setting_gives_one_process_per_step(tmp_path: Path) -> None:
    # A fresh interpreter: the definitions read the settings once, at import.
    probe = (
        "from quant_assets.definitions import defs; "
        "print(defs.resolve_job_def('nightly_retraining').executor_def.name)"
    )
    env = {**os.environ, "QUANT_HOME": str(tmp_path), "QUANT_STEP_EXECUTOR": "multiprocess"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "multiprocess"
