"""The production stack as started: every service up, the instance's queue and pools, and the
schedules' next ticks and default statuses as the README states them (through the webserver)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd
import pytest
import yaml

from quant_assets.market import calendar
from quant_assets.production.stack import SERVICES, ProductionStack, http_ok
from quant_assets_tests.production.test_daemon_e2e import REPO_SELECTOR, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

INSTANCE = """{ instance {
  runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml }
  poolConfig { poolGranularity defaultPoolLimit }
  runLauncher { name } } }"""
SCHEDULES = """query($repo: RepositorySelector!) { schedulesOrError(repositorySelector: $repo) {
  ... on Schedules { results { name executionTimezone scheduleState { status }
    futureTicks(limit: 3) { results { timestamp } } } } } }"""
SENSORS = """query($repo: RepositorySelector!) { sensorsOrError(repositorySelector: $repo) {
  ... on Sensors { results { name sensorState { status } } } } }"""

# The README ("Dagster jobs and groups"): New York times, weekdays.
README_TICKS: dict[str, Callable[[pd.Timestamp], bool]] = {
    "premarket_corporate_actions_schedule": lambda t: (t.hour, t.minute) == (8, 0),
    "nightly_retraining_schedule": lambda t: (t.hour, t.minute) == (2, 0),
    "live_monitoring_schedule": lambda t: 9 <= t.hour <= 16 and t.minute % 10 == 0,
    "after_close_backfill_schedule": lambda t: (t.hour, t.minute) == (16, 30),
}
README_RUNNING = {
    "premarket_corporate_actions_schedule",
    "gap_backfill_sensor",
    "adjusted_bars_rebuild_sensor",
    "drift_rollback_sensor",
    "champion_reload_sensor",
}


def minutes_after(now: pd.Timestamp) -> Iterator[pd.Timestamp]:
    t = now.tz_convert(calendar.MARKET_TZ).floor("min") + pd.Timedelta(minutes=1)
    while True:
        yield t
        t += pd.Timedelta(minutes=1)


def expected_ticks(schedule: str, now: pd.Timestamp, count: int = 3) -> list[pd.Timestamp]:
    """The next ``count`` weekday minutes after ``now`` that the README names for it."""
    matches = README_TICKS[schedule]
    found: list[pd.Timestamp] = []
    for t in minutes_after(now):
        if t.weekday() < 5 and matches(t):
            found.append(t)
            if len(found) == count:
                return found
    raise AssertionError("unreachable")


def test_every_service_is_up(stack: ProductionStack) -> None:
    status = stack.status()
    assert status == {**dict.fromkeys(SERVICES, "running"), "postgres": "running"}
    assert not stack.unhealthy_daemons()
    assert http_ok(f"{stack.mlflow_url}/health")

    # The poller serves its own ticker only (conftest.POLLED), with runless events on. Its
    # first line comes after its imports: right after the start it may not be written yet.
    def poller_log() -> str:
        return " ".join((stack.logs / "poller.log").read_text().split())

    wait_for("the poller's first line", lambda: "Dagster events" in poller_log(), timeout_s=120)
    assert "1 tickers; Dagster events on" in poller_log()


def test_instance_queues_runs_and_pools_big_tables(stack: ProductionStack) -> None:
    instance = stack.graphql(INSTANCE)["instance"]
    queue = instance["runQueueConfig"]
    assert queue["maxConcurrentRuns"] == 2
    assert yaml.safe_load(queue["tagConcurrencyLimitsYaml"]) == [
        {"key": "quant/trigger", "value": "drift", "limit": 1}
    ]
    assert instance["poolConfig"] == {"poolGranularity": "run", "defaultPoolLimit": 1}
    assert instance["runLauncher"]["name"] == "DefaultRunLauncher"


def test_schedules_tick_when_the_readme_says(stack: ProductionStack) -> None:
    before = pd.Timestamp.now(tz="UTC")
    data = stack.graphql(SCHEDULES, {"repo": REPO_SELECTOR})["schedulesOrError"]["results"]
    after = pd.Timestamp.now(tz="UTC")
    assert {s["name"] for s in data} == set(README_TICKS)
    for schedule in data:
        name = schedule["name"]
        assert schedule["executionTimezone"] == calendar.MARKET_TZ
        ticks = [
            pd.Timestamp(t["timestamp"], unit="s", tz="UTC")
            for t in schedule["futureTicks"]["results"]
        ]
        # a tick boundary may pass during the query: either side of it is right
        assert ticks in (expected_ticks(name, before), expected_ticks(name, after)), name
        running = schedule["scheduleState"]["status"] == "RUNNING"
        assert running == (name in README_RUNNING), name
    sensors = stack.graphql(SENSORS, {"repo": REPO_SELECTOR})["sensorsOrError"]["results"]
    assert {s["name"] for s in sensors if s["sensorState"]["status"] == "RUNNING"} == {
        name for name in README_RUNNING if name.endswith("_sensor")
    }
