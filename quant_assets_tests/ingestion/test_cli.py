"""``quant ingest`` (replay and live) and ``quant backfill`` from the command line."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest

from quant_assets.cli import main
from quant_assets.ingestion import backfill_queue as queue
from quant_assets.ingestion.gaps import Gap
from quant_assets.market import calendar
from quant_assets.market.file_source import FileSource
from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars, write_bars
from quant_assets.storage.database import get_engine
from quant_assets_tests.ingestion.helpers import DAY, market_resource, ny
from quant_assets_tests.market.helpers import market_bars, thinned
from quant_assets_tests.market.helpers import write_bars as write_bar_files


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_ingest_replay(quant_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["ingest", "--replay", f"{DAY} 09:25", f"{DAY} 10:00", "--tickers", "AAPL,MSFT",
         "--dagster", "off"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "bars_written" in out and "simulated in" in out
    engine = get_engine(quant_env)
    open_ = calendar.session_bounds(DAY)[0]
    truth = market_resource().get_source().get_bars("AAPL", open_, ny(DAY, "09:59"))
    assert len(read_bars(engine, ["AAPL"], open_, ny(DAY, "09:59"))) == len(truth)


def test_ingest_replay_on_any_source_with_history(
    quant_env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    open_, close = calendar.session_bounds(DAY)
    bars = market_bars(market_resource().get_source(), ["AAPL", "MSFT"], open_, close)
    write_bar_files(thinned(bars, "MSFT", 0.3), tmp_path / "files")
    monkeypatch.setenv("QUANT_SOURCE", "files")
    monkeypatch.setenv("QUANT_FILES_DIR", str(tmp_path / "files"))
    code = main(
        ["ingest", "--replay", f"{DAY} 09:25", f"{DAY} 10:30", "--tickers", "AAPL,MSFT",
         "--dagster", "off"]
    )  # fmt: skip
    assert code == 0 and "source files" in capsys.readouterr().out
    served = FileSource(tmp_path / "files")
    for ticker in ("AAPL", "MSFT"):
        truth = served.get_bars(ticker, open_, ny(DAY, "10:29"))
        stored = read_bars(get_engine(quant_env), [ticker], open_, ny(DAY, "10:29"))
        pd.testing.assert_frame_equal(stored, truth.reset_index(drop=True))


def test_ingest_live_stops_on_sigterm(quant_env: Settings) -> None:
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert main(["ingest", "--tickers", "AAPL", "--dagster", "off"]) == 0
    finally:
        timer.cancel()


def test_backfill_lists_and_settles_the_queue(
    quant_env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    engine = get_engine(quant_env)
    source = market_resource().get_source()
    open_, close = calendar.session_bounds(DAY)
    bars = source.get_bars("AAPL", open_, close)
    missed = (bars["ts"] >= ny(DAY, "11:00")) & (bars["ts"] < ny(DAY, "11:10"))
    write_bars(bars[~missed], engine)
    queue.enqueue_gaps(
        engine,
        [
            Gap("AAPL", ny(DAY, "11:00"), ny(DAY, "11:10")),
            Gap("AMZN", *source.halts("AMZN", open_, close)[0]),
        ],
    )
    assert main(["backfill", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "pending 2" in listed and "AMZN" in listed
    assert main(["backfill"]) == 0
    assert queue.status_counts(engine) == {"done": 1, "unfillable": 1}
    stored = read_bars(engine, ["AAPL"], open_, close)
    pd.testing.assert_frame_equal(stored, bars.reset_index(drop=True))
