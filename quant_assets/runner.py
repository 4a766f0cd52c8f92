"""Run the project's Dagster jobs from ``quant`` commands, in this process, on the DAGSTER_HOME
instance: a range of partitions as one run, a gap backfill partition by partition, the
instance the live poller reports to, the walk-forward evaluation."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from sqlalchemy import Engine

from quant_assets.defs.evaluation import EVALUATE_JOB
from quant_assets.defs.ingestion import GAP_IDS_TAG, ticker_done
from quant_assets.defs.partitions import (
    day_ticker_key,
    day_ticker_partitions,
    job_range_tags,
    ticker_partitions,
)
from quant_assets.defs.resources import MarketSourceResource
from quant_assets.defs.runless import runless_reporter
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.history_import import HistoryImportError
from quant_assets.ingestion.poller import BarsReporter
from quant_assets.market.sources import MarketSource
from quant_assets.settings import Settings

# Not named dagster.yaml: `dagster dev` would warn that such a file in the folder it starts in
# is not the instance of DAGSTER_HOME.
DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.sqlite.yaml"
CODE_LOCATION = "quant_assets"  # workspace.yaml's location_name
# The UI lists a job's runs (Jobs → job → Runs, the Overview timeline) by this tag, which a run
# launched from a code location gets from its origin; an in-process run has no origin, so ours
# carry it to be listed under their jobs like launched runs. Dagster's own name for the tag.
REPOSITORY_LABEL_TAG = ".dagster/repository"
REPOSITORY_LABEL = f"__repository__@{CODE_LOCATION}"  # a Definitions' repository name


def execute_in_process(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    """``job.execute_in_process`` on ``instance``, the run attributed to the project's code
    location in the UI (``REPOSITORY_LABEL_TAG``)."""
    return job.execute_in_process(
        instance=instance, tags={REPOSITORY_LABEL_TAG: REPOSITORY_LABEL, **(tags or {})}, **kwargs
    )


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at QUANT_HOME/dagster unless set, with the project's instance file."""
    home = Path(os.environ.get("DAGSTER_HOME") or (settings.home / "dagster")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and DAGSTER_YAML.exists():
        target.write_text(DAGSTER_YAML.read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def market_resources(settings: Settings) -> dict[str, MarketSourceResource]:
    """The market resource of ``settings`` for a run: the definitions' own is built from the
    settings of the process's first import, so a command's ``--source`` (or a test's
    environment) reaches the run only this way; the run's config shows which market it read."""
    return {"market": MarketSourceResource.from_settings(settings)}


def run_partition_range(
    defs: dg.Definitions,
    job_name: str,
    first_day: pd.Timestamp,
    last_day: pd.Timestamp,
    tickers: tuple[str, ...],
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    resources: Mapping[str, object] | None = None,
    run_id: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Run a partitioned job once over sessions first … last: the rectangle with ``tickers``
    for a day × ticker job, every ticker of the market resource for a day-partitioned one."""
    job = defs.resolve_job_def(job_name)
    tags = job_range_tags(job.partitions_def, first_day, last_day, tickers)
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    return execute_in_process(
        job,
        instance,
        tags,
        run_config=run_config,
        raise_on_error=True,
        resources=resources,
        run_id=run_id,
    )


def ticker_blocks(tickers: Sequence[str]) -> list[tuple[str, ...]]:
    """``tickers`` as runs of neighbours in the partitions' ticker order: a run covers days ×
    *consecutive* tickers (a rectangle), so a subset with gaps takes one run per block."""
    position = {t: i for i, t in enumerate(ticker_partitions.get_partition_keys())}
    unknown = [t for t in tickers if t not in position]
    if unknown:
        raise HistoryImportError(
            f"no raw_bars partitions for {', '.join(unknown)}: the tickers are those of "
            f"QUANT_TICKERS ({', '.join(position)})"
        )
    blocks: list[list[str]] = []
    for ticker in sorted(set(tickers), key=position.__getitem__):
        if blocks and position[ticker] == position[blocks[-1][-1]] + 1:
            blocks[-1].append(ticker)
        else:
            blocks.append([ticker])
    return [tuple(b) for b in blocks]


@dataclass(frozen=True)
class ImportRuns:
    """The ``raw_bars`` runs of one ``quant import`` and what they changed."""

    run_ids: tuple[str, ...]
    rows_changed: int


def import_raw_bars(
    settings: Settings,
    tickers: Sequence[str],
    first_day: pd.Timestamp,
    last_day: pd.Timestamp,
    on_ticker: Callable[[str], None] | None = None,
) -> ImportRuns:
    """Store sessions first … last of ``tickers`` from the source of ``settings`` through
    ``raw_bars``: one run (one per block of ``ticker_blocks`` for a subset with gaps), with
    ``on_ticker`` told as each ticker is done. The run's console log stays quiet (its events
    are in the instance): the caller reports progress, results and errors itself."""
    from quant_assets.definitions import defs

    ensure_dagster_home(settings)
    run_ids, changed = [], 0
    with dg.DagsterInstance.get() as instance:
        for block in ticker_blocks(tickers):
            run_id = str(uuid.uuid4())  # the listener is registered before the run starts
            if on_ticker is not None:
                instance.add_event_listener(run_id, _progress_listener(on_ticker))
            result = run_partition_range(
                defs, "ingest_raw_bars", first_day, last_day, block, instance,
                log_level="CRITICAL", resources=market_resources(settings), run_id=run_id,
            )  # fmt: skip
            run_ids.append(result.run_id)
            metadata = result.asset_materializations_for_node("raw_bars")[0].metadata
            changed += int(metadata["rows_new_or_changed"].value)
    return ImportRuns(tuple(run_ids), changed)


def _progress_listener(on_ticker: Callable[[str], None]) -> Callable[[dg.EventLogEntry], None]:
    """An instance event listener that reports each ``progress_line`` of a run."""

    def listen(entry: dg.EventLogEntry) -> None:
        ticker = ticker_done(entry.user_message or "") if entry.dagster_event is None else None
        if ticker is not None:
            on_ticker(ticker)

    return listen


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
            result = execute_in_process(
                job, instance, {GAP_IDS_TAG: ids[:200]}, partition_key=key, raise_on_error=False
            )
            return result.success

        return queue.backfill(engine, source, tickers, entries, run_partition, on_partition)


def run_evaluation(settings: Settings, run_config: dict) -> dg.ExecuteInProcessResult:
    """One ``evaluate`` run (walk-forward evaluation); a failed run is returned, not raised."""
    from quant_assets.definitions import defs

    ensure_dagster_home(settings)
    with dg.DagsterInstance.get() as instance:
        return execute_in_process(
            defs.resolve_job_def(EVALUATE_JOB),
            instance,
            run_config={**run_config, "loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
