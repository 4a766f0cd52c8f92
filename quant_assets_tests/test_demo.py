"""``quant demo`` on a user's folder of CSVs (QUANT_SOURCE=files): end to end, every ticker in
the summary, a ticker with too little data named with the reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from quant_assets.cli import main
from quant_assets.market import calendar
from quant_assets.market.file_source import FileSource
from quant_assets.market.synthetic import SyntheticConfig, synthetic_market
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars
from quant_assets.storage.database import get_engine
from quant_assets_tests.market.helpers import (
    market_bars,
    thinned,
    write_bars,
    write_corporate_actions,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN")  # the first tickers of the partitions, in order
MARKET = synthetic_market(
    SyntheticConfig(tickers=TICKERS, start="2026-01-02", end="2026-06-30", signal=0.2)
)
FILES = ("2026-02-02", "2026-03-23")  # the folder's sessions: history, window, the live day
WINDOW = ("2026-03-02", "2026-03-20")
LIVE_DAY = "2026-03-23"
SHORT_FROM = pd.Timestamp("2026-03-18")  # AMZN's file starts here: too little data
TINY = {  # small models, one epoch: this test is about the pipeline on files, not the models
    "EPOCHS": "1", "LSTM_UNITS": "8", "LSTM_DENSE": "8", "TRANSFORMER_D_MODEL": "8",
    "TRANSFORMER_HEADS": "2", "TRANSFORMER_FF": "16", "TRANSFORMER_BLOCKS": "1",
    "PARITY_WINDOWS": "64", "SESSIONS": "15", "HOLDOUT_SESSIONS": "2",
}  # fmt: skip


@pytest.fixture
def backend() -> str:
    return "sqlite"


def user_bars() -> pd.DataFrame:
    """Liquid AAPL and MSFT, NVDA thin (a quarter of its minutes), AMZN from SHORT_FROM only."""
    bars = thinned(market_bars(MARKET, TICKERS, *calendar.span_of_days(*FILES)), "NVDA", 0.25)
    late = (bars["ticker"] == "AMZN") & (calendar.session_labels(bars["ts"]) < SHORT_FROM)
    return bars[~late].reset_index(drop=True)


@pytest.fixture
def folder(quant_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The user's folder and the settings that run the demo on it."""
    folder = tmp_path / "files"
    write_bars(user_bars(), folder)
    write_corporate_actions(MARKET, folder, TICKERS)
    env = {
        "QUANT_SOURCE": "files",
        "QUANT_FILES_DIR": str(folder),
        "QUANT_TICKERS": ",".join(TICKERS),
        "QUANT_DEMO_START": WINDOW[0],
        "QUANT_DEMO_END": WINDOW[1],
        # The replay polls every 4 minutes (± 3 s), inside the poller's 5-minute lookback.
        "QUANT_POLL_INTERVAL_S": "240",
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        **{f"QUANT_TRAIN_{k}": v for k, v in TINY.items()},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return folder


def test_the_demo_runs_end_to_end_on_a_folder_of_csvs(folder: Path, quant_env: Settings) -> None:
    assert main(["demo"]) == 0
    summary = json.loads(quant_env.demo_summary_path.read_text())
    assert summary["source"] == "files"
    assert [s["success"] and not s["skipped"] for s in summary["stages"]] == [True] * 3
    tickers = summary["tickers"]
    assert list(tickers) == list(TICKERS)

    # History counted in bars: the thin ticker reaches further back than the liquid ones.
    for name in ("AAPL", "MSFT", "NVDA"):
        assert tickers[name]["history_bars"] >= 1010 and tickers[name]["notes"] == []
        assert tickers[name]["training_windows"]["train"] > 0
    assert tickers["NVDA"]["history_from"] < tickers["AAPL"]["history_from"]
    assert 0.2 < tickers["NVDA"]["window"]["minute_share"] < 0.3
    engine = get_engine(quant_env)
    start = calendar.span_of_days(tickers["NVDA"]["history_from"], WINDOW[0])[0]
    first_nvda = read_bars(engine, ["NVDA"], start, calendar.span_of_days(*WINDOW)[1])["ts"].min()
    assert calendar.session_of(first_nvda) == pd.Timestamp(tickers["NVDA"]["history_from"])

    # Too little data: named with the reasons, no crash.
    amzn = tickers["AMZN"]
    assert amzn["history_bars"] == 0 and amzn["window"]["sessions_with_bars"] == 3
    assert any("no bar in the 6 sessions before" in n for n in amzn["notes"])
    assert any("no training window" in n for n in amzn["notes"])

    # The oracle reads the synthetic market's latent signal: skipped on files, and said so.
    assert "oracle" not in summary["models"]["macro_f1_updown"]
    assert "latent signal" in summary["models"]["skipped"]["oracle"]
    # Every model and fitted baseline is backtested on the holdout, net of costs.
    holdout = summary["models"]["holdout"]
    assert {"lstm_v1", "transformer_v1", "logistic"} <= set(holdout) and "oracle" not in holdout
    assert all("macro_f1_updown" in f and "holdout_trades" in f for f in holdout.values())

    # The replay leaves the trail a real poller leaves: runless raw_bars events per partition.
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        live_keys = {f"{LIVE_DAY}|{t}" for t in TICKERS}
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("raw_bars"), asset_partitions=list(live_keys)
            ),
            limit=1000,
        ).records
        assert f"{LIVE_DAY}|AAPL" in {r.partition_key for r in records} <= live_keys
        assert not any(r.run_id for r in records)  # runless, as the poller's

    # The live session was replayed from the files (up to its last poll, 15:55 or later).
    open_, close = calendar.session_bounds(LIVE_DAY)
    polled = close - pd.Timedelta(minutes=5)
    served = FileSource(folder)
    for name in TICKERS:
        replayed = read_bars(engine, [name], open_, polled)
        pd.testing.assert_frame_equal(replayed, served.get_bars(name, open_, polled))
