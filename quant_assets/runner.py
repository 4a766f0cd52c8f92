"""Run jobs of the project's Definitions in this process, on the DAGSTER_HOME instance."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from quant_assets.defs.partitions import range_tags
from quant_assets.settings import Settings

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at QUANT_HOME/dagster unless set, with the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or (settings.home / "dagster")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and DAGSTER_YAML.exists():
        target.write_text(DAGSTER_YAML.read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_partition_range(
    defs: dg.Definitions,
    job_name: str,
    first_day: pd.Timestamp,
    last_day: pd.Timestamp,
    tickers: tuple[str, ...],
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
) -> dg.ExecuteInProcessResult:
    """Run a day × ticker job once over the rectangle of sessions and tickers (one run)."""
    tags = range_tags(first_day, last_day, tickers)
    job = defs.resolve_job_def(job_name)
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    return job.execute_in_process(
        run_config=run_config, instance=instance, tags=tags, raise_on_error=True
    )
