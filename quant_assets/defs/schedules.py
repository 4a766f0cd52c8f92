"""Schedules: the nightly retraining, live monitoring in market hours, the after-close backfill.

(The premarket corporate-actions schedule lives beside its asset.)
"""

import dagster as dg
import pandas as pd

from quant_assets.defs.partitions import range_tags
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.ingestion.backfill_queue import backfill, entries
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.market import calendar

NIGHTLY_ASSETS = (
    "corporate_actions",
    "adjusted_bars",
    "features",
    "labels",
    "training_dataset",
    "lstm_model",
    "transformer_model",
    "champion_model",
)

nightly_job = dg.define_asset_job(
    "nightly_retraining",
    selection=dg.AssetSelection.assets(*NIGHTLY_ASSETS),
    description=(
        "corporate actions → adjusted bars → features → labels → dataset → LSTM and "
        "Transformer → champion, over the partitions of the last session (or any range)."
    ),
)

live_monitoring_job = dg.define_asset_job(
    "live_monitoring",
    selection=dg.AssetSelection.assets("live_predictions", "drift_report"),
    description="Score the last hour with the champion and evaluate drift.",
)


@dg.schedule(
    job=nightly_job,
    cron_schedule="0 2 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    description="02:00 New York on weekdays: retrain on everything up to the last session.",
)
def nightly_retraining_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """One run over the last completed session × all tickers, then the unpartitioned assets."""
    now = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC")
    last = calendar.session_before(calendar.session_of(now), 0)
    if calendar.is_session(calendar.session_of(now)) and now < calendar.session_bounds(last)[1]:
        last = calendar.session_before(last, 1)
    return dg.RunRequest(run_key=f"nightly-{last.date()}", tags=range_tags(last, last))


@dg.schedule(
    job=live_monitoring_job,
    cron_schedule="*/10 9-16 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    description="Every 10 minutes while the market is open: score and check drift.",
)
def live_monitoring_schedule(context: dg.ScheduleEvaluationContext):
    """Skip outside regular sessions (holidays, before 09:40, after the close)."""
    now = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC")
    if not calendar.is_open(now - pd.Timedelta(minutes=1)):
        return dg.SkipReason(f"market closed at {now}")
    config = {"as_of": now.isoformat()}
    ops = {name: {"config": config} for name in ("live_predictions", "drift_report")}
    return dg.RunRequest(run_key=f"live-{now.isoformat()}", run_config={"ops": ops})


@dg.op(description="Fill the queued gaps of the day: re-ingest partitions the source has bars for.")
def fill_queued_gaps(
    context: dg.OpExecutionContext, database: DatabaseResource, market: MarketSourceResource
) -> None:
    """The after-hours path of the backfill queue (the same as `quant backfill`)."""
    engine = database.engine
    source = market.get_source()
    todo = entries(engine)

    def run_partition(ticker: str, day: pd.Timestamp, _items: list) -> bool:
        ingest_sessions(source, engine, ticker, [day], market.tickers)
        return True

    report = backfill(engine, source, market.tickers, todo, run_partition)
    context.log.info(f"after-close backfill: {report}")


@dg.job(description="After the close: settle the gap queue, re-ingesting what the source has.")
def gap_backfill_job() -> None:
    """Runs fill_queued_gaps."""
    fill_queued_gaps()


after_close_backfill_schedule = dg.ScheduleDefinition(
    name="after_close_backfill_schedule",
    job=gap_backfill_job,
    cron_schedule="30 16 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    description="16:30 New York on weekdays: fill the minutes the live poller missed.",
)
