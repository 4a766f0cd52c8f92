"""Tell the Dagster instance about bars written outside any run (the live poller's writes).

Each write becomes one runless ``AssetMaterialization`` of ``raw_bars`` per day × ticker
partition it touched (``DagsterInstance.report_runless_asset_event``), so the asset's partitions
fill up in the UI while the poller runs. The events carry ``run_id == ""``; the backfill sensor
ignores them when it looks for a run that re-materialized a partition. ``runless_reporter`` is
what the poller (``ingestion.poller.Poller(reporter=…)``) is given.
"""

from __future__ import annotations

from functools import partial

import dagster as dg
import pandas as pd

from quant_assets.defs.partitions import day_ticker_key
from quant_assets.ingestion.poller import BarsReporter
from quant_assets.market import calendar

RAW_BARS = dg.AssetKey("raw_bars")
REPORTED_BY = "quant ingest (live poller)"


def report_bars(instance: dg.DagsterInstance, bars: pd.DataFrame, source_name: str) -> int:
    """Report ``bars`` (just written to price_data) as runless materializations; return count."""
    if bars.empty:
        return 0
    days = calendar.session_labels(bars["ts"])
    reported = 0
    for (ticker, day), part in bars.groupby([bars["ticker"].astype(str), days], sort=True):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=RAW_BARS,
                partition=day_ticker_key(pd.Timestamp(day), str(ticker)),
                description=f"{len(part)} bar(s) written by {REPORTED_BY}",
                metadata={
                    "rows_written": dg.MetadataValue.int(len(part)),
                    "first_ts": dg.MetadataValue.text(part["ts"].min().isoformat()),
                    "last_ts": dg.MetadataValue.text(part["ts"].max().isoformat()),
                    "source": dg.MetadataValue.text(source_name),
                    "reported_by": dg.MetadataValue.text(REPORTED_BY),
                },
            )
        )
        reported += 1
    return reported


def runless_reporter(instance: dg.DagsterInstance) -> BarsReporter:
    """The poller's reporter that records its writes on ``instance``."""
    return partial(report_bars, instance)
