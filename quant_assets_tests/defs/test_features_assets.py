"""features and labels assets: stored rows equal the pure core run on the whole history."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from quant_assets import daily_tables
from quant_assets.corporate_actions.adjusted_store import read_adjusted_bars, rebuild_adjusted_bars
from quant_assets.corporate_actions.ledger import fetch_corporate_actions
from quant_assets.defs.features import FEATURES, LABELS, features_and_labels
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.features.indicators import create_features
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.labels import LabelSpec, triple_barrier_labels
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.settings import Settings
from quant_assets.storage.database import get_engine, read_from_db

TICKERS = ["AAPL", "MSFT"]
HISTORY = ("2026-08-24", "2026-09-04")
TARGET = ("2026-09-03", "2026-09-04")
TABLES = ("features", "labels")


def materialize(
    keys: list[dg.AssetKey], instance: dg.DagsterInstance, tickers: list[str] | None = None
) -> dg.ExecuteInProcessResult:
    config = {"ops": {"features_and_labels": {"config": {"tickers": tickers}}}} if tickers else None
    return dg.materialize(
        [features_and_labels],
        selection=keys,
        instance=instance,
        run_config=config,
        resources={"database": DatabaseResource(), "market": MarketSourceResource(tickers=TICKERS)},
        tags={
            "dagster/asset_partition_range_start": TARGET[0],
            "dagster/asset_partition_range_end": TARGET[1],
        },
    )


def materializations(
    result: dg.ExecuteInProcessResult, key: dg.AssetKey
) -> list[dg.AssetMaterialization]:
    """The run's materializations of one of the step's two assets."""
    node = result.asset_materializations_for_node("features_and_labels")
    return [m for m in node if m.asset_key == key]


@pytest.fixture
def adjusted(quant_env: Settings) -> pd.DataFrame:
    engine = get_engine(quant_env)
    market = SyntheticMarket(
        SyntheticConfig(tickers=tuple(TICKERS), start="2026-06-01", end="2026-09-30")
    )
    days = list(calendar.sessions(*HISTORY))
    for ticker in TICKERS:
        ingest_sessions(market, engine, ticker, days)
    fetch_corporate_actions(TICKERS, market, engine)
    rebuild_adjusted_bars(engine, TICKERS)
    start, end = calendar.span_of_days(*HISTORY)
    return read_adjusted_bars(engine, TICKERS, start, end)


def on_target(frame: pd.DataFrame) -> pd.DataFrame:
    days = set(calendar.sessions(*TARGET))
    keep = calendar.session_labels(frame["ts"]).isin(days)
    return frame[keep].sort_values(["ticker", "ts"]).reset_index(drop=True)


def test_features_equal_the_core_on_full_history(
    quant_env: Settings, adjusted: pd.DataFrame
) -> None:
    with dg.instance_for_test() as instance:
        result = materialize([FEATURES], instance)
    assert result.success
    check = result.get_asset_check_evaluations()[0]
    assert check.passed
    stored = read_from_db(
        "SELECT * FROM features ORDER BY ticker, ts", get_engine(quant_env), utc_columns=["ts"]
    )
    expected = on_target(
        create_features(adjusted[["ticker", "ts", "open", "high", "low", "close", "volume"]])
    )
    assert len(stored) == len(expected) > 0
    cols = list(FEATURE_SPEC.columns)
    np.testing.assert_allclose(
        stored[cols].to_numpy(float), expected[cols].to_numpy(float), rtol=1e-9, atol=1e-9
    )
    events = materializations(result, FEATURES)
    assert sorted(e.partition for e in events) == list(TARGET)  # one event per day, not per ticker
    meta = events[0].metadata
    assert meta["rows"].value == len(stored) and meta["warm_rows"].value == len(stored)
    assert meta["scope"].value == "all 2 tickers" and meta["rows_stored"].value == len(stored)
    for ticker, n in stored.groupby("ticker").size().items():
        assert f"| {ticker} | {n:,} | {n:,} | {n:,} |" in meta["per_ticker"].value


def test_a_run_of_some_tickers_still_reports_every_tickers_stored_rows(
    quant_env: Settings, adjusted: pd.DataFrame
) -> None:
    with dg.instance_for_test() as instance:
        assert materialize([FEATURES, LABELS], instance).success
        one = materialize([FEATURES, LABELS], instance, tickers=["MSFT"])
    assert one.success
    engine = get_engine(quant_env)
    for key in (FEATURES, LABELS):
        stored = read_from_db(f"SELECT ticker FROM {key.path[-1]}", engine)
        n = stored.groupby("ticker").size()
        meta = materializations(one, key)[0].metadata
        assert meta["tickers"].value == 1
        assert meta["scope"].value.startswith("1 of 2 tickers (MSFT)")
        assert meta["rows_stored"].value == len(stored)
        table = meta["per_ticker"].value
        warm = " – |" if key == FEATURES else ""  # features list warm rows, labels don't
        assert f"| AAPL | not in this run |{warm} {n['AAPL']:,} |" in table
        assert f"| MSFT | {n['MSFT']:,} |" in table


def test_labels_equal_the_core_and_report_balance(
    quant_env: Settings, adjusted: pd.DataFrame
) -> None:
    with dg.instance_for_test() as instance:
        result = materialize([LABELS], instance)
        again = materialize([LABELS], instance)
    assert result.success and again.success
    assert result.get_asset_check_evaluations()[0].passed
    stored = read_from_db(
        "SELECT ticker, ts, label, t1 FROM labels ORDER BY ticker, ts",
        get_engine(quant_env),
        utc_columns=["ts"],
    )
    bars = adjusted[["ticker", "ts", "open", "high", "low", "close", "volume"]]
    expected = on_target(triple_barrier_labels(bars, LabelSpec()))
    assert len(stored) == len(expected)
    assert stored["label"].astype("Int8").tolist() == expected["label"].tolist()
    balance = materializations(result, LABELS)[0].metadata["class_balance"].value
    assert sum(balance.values()) == len(stored)
    assert set(balance) >= {"-1", "0", "1"}


def test_one_run_of_both_reads_each_tickers_bars_once_and_stores_the_same(
    quant_env: Settings, adjusted: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = get_engine(quant_env)
    with dg.instance_for_test() as instance:
        assert materialize([FEATURES], instance).success
        assert materialize([LABELS], instance).success
    alone = {t: read_from_db(f"SELECT * FROM {t} ORDER BY ticker, ts", engine) for t in TABLES}
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
    reads = []
    real_read = daily_tables.read_adjusted_bars

    def counted(*args, **kwargs):
        reads.append(args[1])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(daily_tables, "read_adjusted_bars", counted)
    with dg.instance_for_test() as instance:
        result = materialize([FEATURES, LABELS], instance)
    assert result.success and len(result.get_asset_check_evaluations()) == 2
    assert sorted(reads) == [[t] for t in TICKERS]
    for table in TABLES:
        both = read_from_db(f"SELECT * FROM {table} ORDER BY ticker, ts", engine)
        pd.testing.assert_frame_equal(both, alone[table])
