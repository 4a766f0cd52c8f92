"""The one ``Definitions``: how its launched runs execute their steps (QUANT_STEP_EXECUTOR)."""

from __future__ import annotations

from pathlib import Path

from quant_assets.definitions import defs
from quant_assets_tests.helpers import fresh_interpreter

JOBS = ("nightly_retraining", "ingest_raw_bars", "live_monitoring", "evaluate")


def test_launched_runs_execute_their_steps_in_the_run_process_by_default() -> None:
    assert {defs.resolve_job_def(job).executor_def.name for job in JOBS} == {"in_process"}
    asset_job = defs.resolve_implicit_global_asset_job_def()  # what an asset page launches
    assert asset_job.executor_def.name == "in_process"


def test_the_setting_gives_one_process_per_step(tmp_path: Path) -> None:
    probe = (
        "from quant_assets.definitions import defs; "
        "print(defs.resolve_job_def('nightly_retraining').executor_def.name)"
    )
    env = {"QUANT_HOME": str(tmp_path), "QUANT_STEP_EXECUTOR": "multiprocess"}
    done = fresh_interpreter(probe, tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "multiprocess"
