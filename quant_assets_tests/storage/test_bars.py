"""Raw bars and the quarantine in storage: every row received is stored or quarantined."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select, text

from quant_assets.market.bar_validation import validate_bars
from quant_assets.storage.bars import (
    read_bars,
    read_ticker_rows,
    rows_per_ticker,
    write_bars,
    write_quarantine,
)
from quant_assets.storage.bulk import read_select
from quant_assets.storage.database import create_db_engine, to_db_timestamp
from quant_assets.storage.schema import price_data
from quant_assets_tests.storage.helpers import DAY_OPEN, bars


def quarantine(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text("SELECT ticker, ts, reason, payload FROM bar_quarantine"), conn)


def hostile_rows() -> pd.DataFrame:
    frame = bars(n=6).astype({"volume": "float64"})
    frame["ticker"] = frame["ticker"].astype("string")
    frame.loc[0, "close"] = np.nan
    frame.loc[1, "volume"] = np.nan
    frame.loc[2, "ticker"] = pd.NA
    frame.loc[3, "ticker"] = "T" * 80
    frame.loc[4, "ts"] = pd.NaT
    frame.loc[5, "volume"] = 1e19
    return frame


def test_any_refused_row_can_be_kept_in_the_quarantine(engine: Engine) -> None:
    checked = validate_bars(hostile_rows(), ["AAPL"])
    assert checked.clean.empty and len(checked.quarantined) == 6
    assert write_quarantine(checked.quarantined, engine) == 6
    stored = quarantine(engine)
    assert len(stored) == 6 and stored["ticker"].isna().sum() == 1
    assert ("T" * 80) in set(stored["ticker"]) and stored["ts"].isna().sum() == 1
    assert any("nan" in p for p in stored["payload"]) and any(
        "1e+19" in p for p in stored["payload"]
    )
    assert write_quarantine(checked.quarantined, engine) == 0  # the same rows again: kept once


def test_conflicting_duplicates_keep_both_payloads(engine: Engine) -> None:
    frame = pd.concat([bars(n=2), bars(n=2).iloc[[1]].assign(close=999.0, high=999.5)])
    checked = validate_bars(frame, ["AAPL"])
    write_quarantine(checked.quarantined, engine)
    stored = quarantine(engine)
    assert len(stored) == 2 and stored["payload"].nunique() == 2


def test_rows_stored_plus_rows_quarantined_equal_rows_received(engine: Engine) -> None:
    frame = pd.concat([bars(n=20), hostile_rows()], ignore_index=True)
    frame["ticker"] = frame["ticker"].astype("string")
    checked = validate_bars(frame, ["AAPL"])
    assert write_bars(checked.clean, engine) == len(checked.clean)
    write_quarantine(checked.quarantined, engine)
    stored = read_bars(engine, ["AAPL"], DAY_OPEN, DAY_OPEN + pd.Timedelta(days=1))
    assert len(stored) + len(quarantine(engine)) == len(frame.drop_duplicates())
    pd.testing.assert_frame_equal(stored, checked.clean)  # every stored value is the input's


def test_the_first_quarantine_layout_is_migrated(settings) -> None:
    engine = create_db_engine(settings)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE bar_quarantine"))
        conn.execute(
            text(
                "CREATE TABLE bar_quarantine (ticker VARCHAR(32) NOT NULL, ts TIMESTAMP NOT NULL, "
                "reason VARCHAR(32) NOT NULL, payload TEXT NOT NULL, seen_at TIMESTAMP NOT NULL, "
                "PRIMARY KEY (ticker, ts, reason))"
            )
        )
        conn.execute(
            text(
                "INSERT INTO bar_quarantine VALUES "
                "('AAPL', '2026-09-01 13:31:00', 'bad_volume', '1,2,0.5,1,-5', "
                "'2026-09-01 14:00:00')"
            )
        )
    engine.dispose()
    migrated = create_db_engine(settings)
    stored = quarantine(migrated)
    assert stored["reason"].tolist() == ["bad_volume"] and stored["payload"][0] == "1,2,0.5,1,-5"
    checked = validate_bars(hostile_rows(), ["AAPL"])
    assert write_quarantine(checked.quarantined, migrated) == 6
    migrated.dispose()


def test_a_named_ticker_read_is_the_generic_read_on_every_backend(engine: Engine) -> None:
    """The binary COPY read (PostgreSQL, tickers named) returns what read_select does."""
    stored = [bars("AAPL", 7), bars("F", 5, 9.5), bars("BRK.B", 3, 400.0), bars("ÄÖ", 2)]
    write_bars(pd.concat(stored, ignore_index=True), engine)
    start, end = DAY_OPEN + pd.Timedelta(minutes=1), DAY_OPEN + pd.Timedelta(minutes=6)
    columns = ["ticker", "ts", "open", "close", "volume"]
    for tickers in (["F", "AAPL", "ÄÖ", "NONE"], ["BRK.B"], None, []):
        got = read_ticker_rows(engine, price_data, columns, tickers, start, end)
        query = select(*(price_data.c[c] for c in columns)).where(
            price_data.c.ts >= to_db_timestamp(start, engine),
            price_data.c.ts < to_db_timestamp(end, engine),
        )
        if tickers is not None:
            query = query.where(price_data.c.ticker.in_(tickers))
        with engine.connect() as conn:
            want = read_select(conn, query.order_by(price_data.c.ticker, price_data.c.ts))
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
        if len(got):
            assert str(got["ts"].dtype) == "datetime64[ns, UTC]"
            assert got["volume"].dtype == np.int64
    assert list(got.columns) == columns and got.empty


def test_rows_per_ticker_counts_the_window_and_names_every_ticker(engine: Engine) -> None:
    write_bars(pd.concat([bars("AAPL", n=5), bars("MSFT", n=3)], ignore_index=True), engine)
    minute = pd.Timedelta(minutes=1)
    counts = rows_per_ticker(
        engine, "price_data", ["MSFT", "AAPL", "TSLA"], DAY_OPEN + minute, DAY_OPEN + 4 * minute
    )
    assert counts == {"MSFT": 2, "AAPL": 3, "TSLA": 0}
    assert list(counts) == ["MSFT", "AAPL", "TSLA"]  # in the order asked
