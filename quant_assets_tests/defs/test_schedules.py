"""Schedules evaluated with build_schedule_context on an ephemeral instance."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from quant_assets.defs.ingestion import after_close_backfill_schedule
from quant_assets.defs.monitoring import live_monitoring_schedule
from quant_assets.defs.training import nightly_retraining_schedule
from quant_assets.market import calendar


def ny(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_localize(calendar.MARKET_TZ)


def tick(schedule: dg.ScheduleDefinition, at: pd.Timestamp):
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
        return schedule.evaluate_tick(context)


@pytest.mark.parametrize(
    ("now", "session"),
    [
        ("2026-03-24 02:00", "2026-03-23"),  # Tuesday: Monday's session
        ("2026-03-23 02:00", "2026-03-20"),  # Monday: Friday's session
        ("2026-04-06 02:00", "2026-04-02"),  # Monday after Good Friday (closed)
        ("2026-04-03 02:00", "2026-04-02"),  # Good Friday itself: Thursday's session
    ],
)
def test_nightly_covers_the_last_completed_session(now: str, session: str) -> None:
    data = tick(nightly_retraining_schedule, ny(now))
    assert data.run_requests and len(data.run_requests) == 1
    request = data.run_requests[0]
    assert request.run_key == f"nightly-{session}"
    # One day partition: the derived tables build every ticker of that session.
    assert request.tags["dagster/asset_partition_range_start"] == session
    assert request.tags["dagster/asset_partition_range_end"] == session


def test_nightly_cron() -> None:
    assert nightly_retraining_schedule.cron_schedule == "0 2 * * 1-5"
    assert nightly_retraining_schedule.execution_timezone == calendar.MARKET_TZ


@pytest.mark.parametrize(
    ("now", "runs"),
    [
        ("2026-03-24 09:30", False),  # the open: no completed minute yet
        ("2026-03-24 09:40", True),
        ("2026-03-24 12:10", True),
        ("2026-03-24 16:00", True),  # the close: the last window is complete
        ("2026-03-24 16:10", False),
        ("2026-04-03 10:00", False),  # Good Friday
        ("2026-11-27 13:10", False),  # day after Thanksgiving: closed at 13:00
    ],
)
def test_live_monitoring_runs_only_in_market_hours(now: str, runs: bool) -> None:
    at = ny(now)
    data = tick(live_monitoring_schedule, at)
    if not runs:
        assert not data.run_requests and "market closed" in (data.skip_message or "")
        return
    assert data.run_requests and len(data.run_requests) == 1
    request = data.run_requests[0]
    as_of = at.tz_convert("UTC").isoformat()
    assert request.run_key == f"live-{as_of}"
    for op in ("live_predictions", "drift_report"):
        assert request.run_config["ops"][op]["config"]["as_of"] == as_of


def test_after_close_backfill_requests_the_gap_job() -> None:
    data = tick(after_close_backfill_schedule, ny("2026-03-24 16:30"))
    assert data.run_requests and len(data.run_requests) == 1
    assert after_close_backfill_schedule.job_name == "gap_backfill_job"
