"""Run the project's Dagster jobs from ``quant`` commands, in this process, on the DAGSTER_HOME
instance: a range of partitions as one run, a gap backfill partition by partition, the
instance the live poller reports to, the walk-forward evaluation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
from sqlalchemy import Engine

from quant_assets.defs.evaluation import EVALUATE_JOB
from quant_assets.defs.ingestion import GAP_IDS_TAG
from quant_assets.defs.partitions import day_ticker_key, day_ticker_partitions, range_tags
from quant_assets.defs.runless import runless_reporter
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.poller import BarsReporter
from quant_assets.market.sources import MarketSource
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


def poller_reporter(
    settings: Settings, mode: str, stack: contextlib.ExitStack
) -> BarsReporter | None:
    """The live poller's runless-event reporter: ``on``, ``off`` or ``auto`` (DAGSTER_HOME set)."""
    if mode == "off" or (mode == "auto" and not os.environ.get("DAGSTER_HOME")):
        return None
    ensure_dagster_home(settings)
    return runless_reporter(stack.enter_context(dg.DagsterInstance.get()))


def backfill_now(
    settings: Settings,
    engine: Engine,
    source: MarketSource,
    tickers: tuple[str, ...],
    entries: list[queue.GapEntry],
    on_partition: Callable[[str, pd.Timestamp], None] | None = None,
    skipped: Callable[[str], None] | None = None,
) -> queue.BackfillReport:
    """Settle the queue entries now, one ``ingest_raw_bars`` run per partition lacking bars."""
    from quant_assets.definitions import defs

    ensure_dagster_home(settings)
    job = defs.resolve_job_def("ingest_raw_bars")
    with dg.DagsterInstance.get() as instance:

        def run_partition(ticker: str, day: pd.Timestamp, missing: list[queue.GapEntry]) -> bool:
            key = str(day_ticker_key(day, ticker))
            if not day_ticker_partitions.has_partition_key(key):
                if skipped is not None:
                    skipped(key)
                return False
            ids = ",".join(str(e.id) for e in missing)
            result = job.execute_in_process(
                partition_key=key,
                instance=instance,
                raise_on_error=False,
                tags={GAP_IDS_TAG: ids[:200]},
            )
            return result.success

        return queue.backfill(engine, source, tickers, entries, run_partition, on_partition)


def run_evaluation(settings: Settings, run_config: dict) -> dg.ExecuteInProcessResult:
    """One ``evaluate`` run (walk-forward evaluation); a failed run is returned, not raised."""
    from quant_assets.definitions import defs

    ensure_dagster_home(settings)
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def(EVALUATE_JOB).execute_in_process(
            run_config={**run_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}},
            instance=instance,
            raise_on_error=False,
        )
