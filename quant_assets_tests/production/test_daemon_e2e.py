"""End to end through the real dagster-daemon of the production stack (slow: minutes).

Three plants go in at once, the way production meets them (the poller's queue, a drift
decision, a UI backfill), and each test waits for the daemon's sensors, run queue and backfill
loop to act on its own. The waits are the sensors' own intervals (gap_backfill_sensor 60 s,
drift_rollback_sensor 30 s; the project has no setting to shorten them): the gap needs two
sensor ticks after the plant, and its two runs share the one big_tables slot with the
backfill's run.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from quant_assets.defs.partitions import day_ticker_key
from quant_assets.defs.resources import MarketSourceResource
from quant_assets.deployment.model_config import ModelRef
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.market import calendar
from quant_assets.production.stack import ProductionStack
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars
from quant_assets_tests.defs.test_gap_backfill_sensor import MISSED, by_status, seed_session
from quant_assets_tests.ingestion.helpers import DAY, market_resource

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId status jobName startTime endTime tags { key value } } } } }"""
REPO_SELECTOR = {"repositoryName": "__repository__", "repositoryLocationName": "quant_assets"}


def wait_for[T](what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 3):
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(every_s)


def runs(stack: ProductionStack, **run_filter: object) -> list[dict]:
    return stack.graphql(RUNS, {"filter": run_filter})["runsOrError"]["results"]


def planted_by_status(db: Engine) -> dict[str, list]:
    """The queue entries of the planted day only (the poller may queue today's in hours)."""
    return {
        status: planted
        for status, entries in by_status(db).items()
        if (planted := [e for e in entries if str(e.day.date()) == DAY])
    }


def fake_bundle(home: Path, name: str) -> ModelRef:
    folder = home / "models" / name
    folder.mkdir(parents=True)
    (folder / f"{name}.tflite").write_bytes(b"not a model")
    return ModelRef.for_bundle(home, folder)


def report_materialization(stack: ProductionStack, asset: str, metadata: dict) -> None:
    """What an external system does: the webserver's runless-event endpoint."""
    request = urllib.request.Request(
        f"{stack.webserver_url}/report_asset_materialization/{asset}",
        data=json.dumps({"metadata": metadata}).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        assert response.status == 200


LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status } } }"""


BACKFILL_DAYS, BACKFILL_TICKER = ["2026-03-04", "2026-03-05", "2026-03-06"], "NVDA"


@dataclass(frozen=True)
class Plants:
    """What went in, for each test to follow up."""

    market: MarketSourceResource
    backfill_id: str


@pytest.fixture(scope="module")
def plants(stack: ProductionStack, bars_db: Engine) -> Plants:
    """The three plants at once; the daemon works through them while the tests wait."""
    market = market_resource()
    seed_session(bars_db, market)  # AAPL and MSFT miss minutes the source has; AMZN halted
    registry = ModelRegistry.from_settings(Settings(home=stack.quant_home, _env_file=None))
    registry.promote(fake_bundle(stack.quant_home, "lstm_v1"), reason="first")
    registry.promote(fake_bundle(stack.quant_home, "lstm_v2"), reason="second")
    assert registry.champion().model.name == "lstm_v2"
    # The drift_report asset's decision after K severe evaluations of the champion.
    report_materialization(stack, "drift_report", {
        "rollback": True, "level": "severe", "model": "lstm_v2",
        "evaluated_at": "2026-03-25T17:20:00+00:00",
        "decision": "severe drift for 3 consecutive evaluations"})  # fmt: skip
    keys = [str(day_ticker_key(d, BACKFILL_TICKER)) for d in BACKFILL_DAYS]
    # What the UI's "Materialize → backfill" dialog sends for a range of raw_bars partitions.
    answer = stack.graphql(LAUNCH_BACKFILL, {"params": {
        "assetSelection": [{"path": ["raw_bars"]}], "partitionNames": keys}})  # fmt: skip
    launched = answer["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return Plants(market, launched["backfillId"])


@pytest.mark.timeout(600)  # the first test also waits for the stack to start
def test_daemon_sensor_backfills_a_queued_gap(
    stack: ProductionStack, bars_db: Engine, plants: Plants
) -> None:
    def settled() -> dict | None:
        status = planted_by_status(bars_db)
        return status if "pending" not in status and "requested" not in status else None

    status = wait_for("the gap queue to settle", settled, timeout_s=420)
    assert sorted(e.ticker for e in status["done"]) == ["AAPL", "MSFT"]
    assert [e.ticker for e in status["unfillable"]] == ["AMZN"]
    source = plants.market.get_source()
    for ticker, (start, end) in MISSED.items():
        assert len(read_bars(bars_db, [ticker], start, end)) == len(
            source.get_bars(ticker, start, end)
        )
    by_sensor = [{"key": "dagster/sensor_name", "value": "gap_backfill_sensor"}]
    launched = [
        r
        for r in runs(stack, pipelineName="ingest_raw_bars", tags=by_sensor)
        if any(t["key"] == "dagster/partition" and DAY in t["value"] for t in r["tags"])
    ]
    assert len(launched) == 2 and all(r["status"] == "SUCCESS" for r in launched)
    # Both runs are in the pool "big_tables" (one slot): the queue ran them one after another.
    first, second = sorted(launched, key=lambda r: r["startTime"])
    assert first["endTime"] <= second["startTime"]


@pytest.mark.timeout(300)
def test_daemon_rolls_back_on_a_drift_decision(stack: ProductionStack, plants: Plants) -> None:
    def rolled_back() -> bool:
        champion = ModelRegistry.from_settings(
            Settings(home=stack.quant_home, _env_file=None)
        ).champion()
        return champion is not None and champion.model.name == "lstm_v1"

    wait_for("model_config.json to name lstm_v1 again", rolled_back, timeout_s=240)
    (run,) = wait_for(
        "the rollback run to finish",
        lambda: [r for r in runs(stack, pipelineName="rollback_job") if r["endTime"]],
        timeout_s=60,
    )
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS" and tags["quant/trigger"] == "drift"
    assert tags["dagster/sensor_name"] == "drift_rollback_sensor"


@pytest.mark.timeout(420)
def test_ui_partition_backfill_completes(
    stack: ProductionStack, bars_db: Engine, plants: Plants
) -> None:
    def finished() -> str | None:
        data = stack.graphql(BACKFILL, {"id": plants.backfill_id})["partitionBackfillOrError"]
        return data["status"] if data["status"] != "REQUESTED" else None

    assert wait_for("the backfill", finished, timeout_s=360) in {"COMPLETED", "COMPLETED_SUCCESS"}
    (run,) = runs(stack, tags=[{"key": "dagster/backfill", "value": plants.backfill_id}])
    # single_run backfill policy: one run per contiguous key range, here the whole date range
    assert run["status"] == "SUCCESS"
    source = plants.market.get_source()
    for day in BACKFILL_DAYS:
        start, end = calendar.session_bounds(day)
        stored = read_bars(bars_db, [BACKFILL_TICKER], start, end)
        assert len(stored) == len(source.get_bars(BACKFILL_TICKER, start, end)) > 0
