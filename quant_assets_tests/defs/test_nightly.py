"""The nightly retraining on real-like data: on its session one ticker has no bars and another
trades in a fifth of the minutes; the nightly succeeds, and the next session the thin ticker
gets live predictions."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import Engine

from quant_assets.defs.corporate_actions import corporate_actions
from quant_assets.defs.monitoring import live_predictions
from quant_assets.defs.partitions import day_range_tags
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.deployment.champion import promote_manually
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.market import calendar
from quant_assets.market.factory import source_from_settings
from quant_assets.models.bundle import load_bundle
from quant_assets.settings import Settings
from quant_assets.storage.database import get_engine, read_from_db
from quant_assets_tests.helpers import TINY_NETWORKS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

LIQUID, THIN, EMPTY = "CVX", "KO", "PEP"
TICKERS = [LIQUID, THIN, EMPTY]
DAYS = list(calendar.sessions("2026-03-02", "2026-03-20"))  # 15 sessions
NIGHT, NEXT = DAYS[-1], calendar.next_session(DAYS[-1])
TINY = TINY_NETWORKS

DATASET = {"tickers": TICKERS, "sessions": len(DAYS), "holdout_sessions": 2, "window": 20}
NIGHTLY_CONFIG = {
    "ops": {
        "training_dataset": {"config": DATASET},
        "lstm_model": {"config": TINY},
        "transformer_model": {"config": TINY},
    }
}


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def market_env(quant_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("QUANT_TICKERS", ",".join(TICKERS))
    monkeypatch.setenv("QUANT_SYNTHETIC_LIQUIDITY", f"{THIN}:0.2:20")
    return Settings()


def ingest(settings: Settings, engine: Engine, days: list[pd.Timestamp], tickers: list[str]):
    source = source_from_settings(settings)
    for ticker in tickers:
        ingest_sessions(source, engine, ticker, days)


def run_job(
    instance: dg.DagsterInstance,
    name: str,
    days: tuple[pd.Timestamp, pd.Timestamp],
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of a day-partitioned job of the project's Definitions over days, for TICKERS
    (the market resource of the test's settings)."""
    from quant_assets.definitions import defs

    return defs.resolve_job_def(name).execute_in_process(
        instance=instance,
        tags=day_range_tags(*days),
        run_config=run_config or {},
        resources={"market": MarketSourceResource.from_settings(Settings())},
    )


def resources() -> dict[str, object]:
    return {"database": DatabaseResource(), "market": MarketSourceResource.from_settings()}


def assert_backtests_in_mlflow(settings: Settings, bundles: tuple[str, ...]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    for name in bundles:
        run_id = load_bundle(settings.models_dir / name).mlflow_run_id
        assert {"holdout_net_return", "holdout_net_return_at_5bps"} <= set(
            client.get_run(run_id).data.metrics
        )
        files = {a.path for a in client.list_artifacts(run_id)}  # at the root: Compare lists them
        assert {"holdout_equity_curve.png", "holdout_cost_grid.csv"} <= files, files


def rows_on(engine: Engine, table: str, day: pd.Timestamp) -> pd.DataFrame:
    frame = read_from_db(f"SELECT * FROM {table}", engine, utc_columns=["ts"])
    return frame[calendar.session_labels(frame["ts"]) == day]


def test_nightly_with_an_empty_and_a_thin_ticker(market_env: Settings) -> None:
    engine = get_engine(market_env)
    ingest(market_env, engine, DAYS[:-1], TICKERS)
    ingest(market_env, engine, [NIGHT], [LIQUID, THIN])  # EMPTY: no bar on the nightly's day
    with dg.instance_for_test() as instance:
        ledger = dg.materialize([corporate_actions], instance=instance, resources=resources())
        assert ledger.success
        assert run_job(instance, "daily_tables", (DAYS[0], DAYS[-2])).success  # the history
        nightly = run_job(instance, "nightly_retraining", (NIGHT, NIGHT), NIGHTLY_CONFIG)
        assert nightly.success
        champion_md = nightly.asset_materializations_for_node("champion_model")[0].metadata
    # Every model is backtested on the holdout: shown on the asset and logged to its run.
    assert "| lstm_v1 |" in champion_md["backtest"].value
    assert "equity curve](data:image/png" in champion_md["backtest"].value
    assert "net value" in champion_md["reason"].value
    assert_backtests_in_mlflow(market_env, ("lstm_v1", "transformer_v1"))

    features = rows_on(engine, "features", NIGHT)
    per_ticker = features.groupby("ticker")["warm"].agg(["size", "mean"])
    assert EMPTY not in per_ticker.index  # nothing to compute, nothing failed
    assert per_ticker.loc[THIN, "size"] < 0.3 * per_ticker.loc[LIQUID, "size"]
    assert (per_ticker["mean"] == 1.0).all()  # a one-session run warms the thin ticker up
    assert THIN in set(rows_on(engine, "labels", NIGHT)["ticker"])

    registry = ModelRegistry.from_settings(market_env)
    if registry.champion() is None:  # the value rules may refuse tiny models: promote by hand
        promote_manually(registry, market_env.models_dir / "lstm_v1", reason="test")
    ingest(market_env, engine, [NEXT], TICKERS)
    as_of = calendar.session_bounds(NEXT)[0] + pd.Timedelta(minutes=90)
    live = {"ops": {"live_predictions": {"config": {"as_of": as_of.isoformat()}}}}
    with dg.instance_for_test() as instance:
        scored = dg.materialize(
            [live_predictions], instance=instance, resources=resources(), run_config=live
        )
    assert scored.success
    predictions = read_from_db("SELECT ticker, ts FROM predictions", engine)
    counts = predictions["ticker"].value_counts()
    assert counts.get(THIN, 0) > 0 and counts.get(LIQUID, 0) > counts.get(THIN, 0)


def test_on_a_martingale_the_nightly_promotes_nothing_and_live_skips(
    market_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No planted signal: whatever F1 the models reach from time of day, they earn nothing
    after costs, so no first champion; the live path then skips cleanly."""
    monkeypatch.setenv("QUANT_SYNTHETIC_SIGNAL", "0")
    settings = Settings()
    engine = get_engine(settings)
    ingest(settings, engine, DAYS, TICKERS)
    with dg.instance_for_test() as instance:
        assert dg.materialize([corporate_actions], instance=instance, resources=resources()).success
        assert run_job(instance, "daily_tables", (DAYS[0], DAYS[-2])).success
        nightly = run_job(instance, "nightly_retraining", (NIGHT, NIGHT), NIGHTLY_CONFIG)
        assert nightly.success
        md = nightly.asset_materializations_for_node("champion_model")[0].metadata
        live = dg.materialize([live_predictions], instance=instance, resources=resources())
    assert md["decision"].value == "no_champion" and md["champion_after"].value == "none"
    assert "net value FAIL" in md["reason"].value
    assert ModelRegistry.from_settings(settings).champion() is None
    assert live.success and not live.get_asset_materialization_events()
