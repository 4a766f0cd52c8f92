"""FileSource: a user's folder of bar files read back exactly as the synthetic market wrote it."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_assets.corporate_actions.ledger import ledger_from_source, validate_actions
from quant_assets.market import file_source
from quant_assets.market.bar_validation import validate_bars
from quant_assets.market.calendar import MARKET_TZ, sessions
from quant_assets.market.file_source import FileSource, FileSourceError, read_actions_file
from quant_assets.market.frames import empty_bars
from quant_assets.market.sources import MarketSource
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets_tests.market.helpers import (
    file_frame,
    market_bars,
    write_bars,
    write_market,
    write_table,
)

TICKERS = ("AAPL", "MSFT", "NVDA")
CONFIG = SyntheticConfig(tickers=TICKERS, start="2026-02-23", end="2026-04-10")


def ny(stamp: str) -> pd.Timestamp:
    """A New York wall-clock time, tz-aware."""
    return pd.Timestamp(stamp, tz=MARKET_TZ)


# The files hold six sessions across the US DST switch of Sunday 2026-03-08.
FIRST, END = ny("2026-03-05"), ny("2026-03-13")
RANGES = [
    (FIRST, END),  # everything
    (ny("2026-03-06 12:00"), ny("2026-03-11 12:00")),  # across sessions, cut mid-session
    (pd.Timestamp("2026-03-09 15:00", tz="UTC"), pd.Timestamp("2026-03-09 17:00", tz="UTC")),
    (ny("2026-03-07"), ny("2026-03-09")),  # a weekend and the Monday after the switch
]


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(CONFIG)


@pytest.fixture(scope="module")
def bars(market: SyntheticMarket) -> pd.DataFrame:
    return market_bars(market, TICKERS, FIRST, END)


def naive_in(bars: pd.DataFrame, zone: str) -> pd.DataFrame:
    """Bars with their ts as naive wall-clock times in ``zone``."""
    return bars.assign(ts=bars["ts"].dt.tz_convert(zone).dt.tz_localize(None))


# --- round trip ---------------------------------------------------------------------------------
CASES = [
    # fmt, layout, stamps, ts_label, columns, float_volume
    ("csv", "per_ticker", "utc", "start", "canonical", False),
    ("csv", "multi", "ny", "end", "aliases", True),
    ("csv", "per_ticker", "aware", "start", "upper", False),
    ("csv", "multi", "epoch_s", "end", "upper", False),
    ("csv", "per_ticker", "ny", "start", "date_time", True),
    ("csv.gz", "per_ticker", "ny", "start", "upper", True),
    ("csv.gz", "multi", "utc", "end", "canonical", False),
    ("csv.gz", "per_ticker", "epoch_ms", "start", "aliases", False),
    ("parquet", "per_ticker", "aware", "end", "aliases", True),
    ("parquet", "multi", "ny", "start", "upper", False),
    ("parquet", "per_ticker", "utc", "end", "canonical", False),
    ("parquet", "multi", "epoch_us", "start", "canonical", True),
    ("parquet", "per_ticker", "epoch_ns", "end", "upper", False),
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_round_trip_equals_the_synthetic_market(
    case: tuple, market: SyntheticMarket, tmp_path: Path
) -> None:
    fmt, layout, stamps, ts_label, columns, float_volume = case
    files = write_market(
        market, tmp_path, FIRST, END, fmt=fmt, layout=layout, stamps=stamps,
        ts_label=ts_label, columns=columns, float_volume=float_volume,
    )  # fmt: skip
    source = files.source()
    assert isinstance(source, MarketSource) and source.name == "files"
    for ticker in TICKERS:
        for start, end in RANGES:
            pd.testing.assert_frame_equal(
                source.get_bars(ticker, start, end), market.get_bars(ticker, start, end)
            )
    assert source.tickers() == TICKERS
    first, last, rows = source.coverage("AAPL")
    expected = market.get_bars("AAPL", FIRST, END)
    assert (first, last, rows) == (expected["ts"].iloc[0], expected["ts"].iloc[-1], len(expected))


def test_names_columns_and_several_files_of_one_ticker(
    bars: pd.DataFrame, market: SyntheticMarket, tmp_path: Path
) -> None:
    aapl = bars[bars["ticker"] == "AAPL"]
    half = len(aapl) // 2
    write_table(file_frame(aapl.iloc[:half], with_ticker=False), tmp_path / "aapl.csv")
    write_table(file_frame(aapl.iloc[half:], with_ticker=False), tmp_path / "Aapl.parquet")
    # named after one ticker, holding another: the column wins
    write_table(file_frame(bars[bars["ticker"] == "MSFT"]), tmp_path / "NVDA.csv")
    (tmp_path / "._AAPL.csv").write_bytes(b"\x00\x05\x16\x07")  # a macOS companion: ignored
    (tmp_path / "notes.txt").write_text("not a bar file")
    source = FileSource(tmp_path)
    assert source.tickers() == ("AAPL", "MSFT")
    for ticker in ("AAPL", "MSFT"):
        pd.testing.assert_frame_equal(
            source.get_bars(ticker, FIRST, END), market.get_bars(ticker, FIRST, END)
        )
    pd.testing.assert_frame_equal(source.get_bars("NVDA", FIRST, END), empty_bars())
    assert source.coverage("NVDA") == (None, None, 0)
    only = FileSource(tmp_path, tickers=["MSFT"])
    assert only.tickers() == ("MSFT",)
    assert only.get_bars("AAPL", FIRST, END).empty


def test_non_integral_volume_is_left_for_bar_validation(bars: pd.DataFrame, tmp_path: Path) -> None:
    aapl = file_frame(bars[bars["ticker"] == "AAPL"], with_ticker=False, float_volume=True)
    aapl.loc[aapl.index[:3], "volume"] += 0.5
    aapl.loc[aapl.index[3], "volume"] = np.nan
    write_table(aapl, tmp_path / "AAPL.csv")
    served = FileSource(tmp_path).get_bars("AAPL", FIRST, END)
    assert served["volume"].dtype == "float64" and len(served) == len(aapl)
    checked = validate_bars(served, TICKERS)
    assert checked.reason_counts == {"bad_volume": 4}
    assert FileSource(tmp_path).get_bars("AAPL", *RANGES[2])["volume"].dtype == "int64"


# --- time zones and stamps ----------------------------------------------------------------------
def extended_hours_rows(bars: pd.DataFrame, per_day: int) -> pd.DataFrame:
    """``per_day`` pre-market (08:00) and post-market (16:00) rows a day, at the open's prices."""
    rows = []
    for day in sessions(FIRST, END - pd.Timedelta(days=1)):
        opening = bars[bars["ts"] >= ny(f"{day.date()} 09:30")].iloc[0]
        for hhmm in ("08:00", "16:00"):
            stamps = pd.date_range(ny(f"{day.date()} {hhmm}"), periods=per_day, freq="min")
            rows += [opening.to_dict() | {"ts": ts.tz_convert("UTC")} for ts in stamps]
    return pd.DataFrame(rows).astype(bars.dtypes.to_dict())


def test_extended_hours_rows_are_served_for_bar_validation_to_quarantine(
    bars: pd.DataFrame, market: SyntheticMarket, tmp_path: Path
) -> None:
    aapl = bars[bars["ticker"] == "AAPL"]
    extended = extended_hours_rows(aapl, per_day=10)  # 20 of ~410 rows a day: about 5 %
    both = pd.concat([aapl, extended]).sort_values("ts", ignore_index=True)
    write_table(file_frame(naive_in(both, MARKET_TZ), stamps="as_is"), tmp_path / "AAPL.csv")
    served = FileSource(tmp_path, tz=MARKET_TZ).get_bars("AAPL", FIRST, END)
    pd.testing.assert_frame_equal(served, both, check_index_type=False)
    checked = validate_bars(served, TICKERS)
    assert checked.reason_counts == {"extended_hours": len(extended)}
    pd.testing.assert_frame_equal(checked.clean, market.get_bars("AAPL", FIRST, END))


def test_a_file_with_every_extended_minute_is_not_refused(tmp_path: Path) -> None:
    stamps = [
        ts
        for day in ("2026-03-10", "2026-03-11", "2026-03-12")
        for ts in pd.date_range(f"{day} 04:00", f"{day} 19:59", freq="min")
    ]  # 960 minutes a day, 59 % of them outside the regular session
    frame = pd.DataFrame({"Date": stamps, "Open": 10.0, "High": 10.0, "Low": 10.0,
                          "Close": 10.0, "Volume": 100})  # fmt: skip
    write_table(frame, tmp_path / "SPY.csv")
    served = FileSource(tmp_path, tz=MARKET_TZ).get_bars("SPY", FIRST, END)
    assert len(served) == len(frame)


@pytest.mark.parametrize(
    ("written_in", "read_in"),
    [(MARKET_TZ, "UTC"), ("UTC", MARKET_TZ), ("America/Chicago", MARKET_TZ),
     ("America/Los_Angeles", "UTC"), ("America/Denver", MARKET_TZ)],
)  # fmt: skip
def test_a_file_read_in_the_wrong_zone_is_refused_naming_its_zone(
    written_in: str, read_in: str, bars: pd.DataFrame, tmp_path: Path
) -> None:
    aapl = naive_in(bars[bars["ticker"] == "AAPL"], written_in)
    write_table(file_frame(aapl, stamps="as_is", with_ticker=False), tmp_path / "AAPL.csv")
    with pytest.raises(FileSourceError) as info:
        FileSource(tmp_path, tz=read_in).get_bars("AAPL", FIRST, END)
    message = str(info.value)
    assert "AAPL.csv" in message and f"read in {read_in}" in message
    assert f"set QUANT_FILES_TZ={written_in}" in message
    outside = re.search(r"AAPL.csv: (\d+)% of its \d+ rows fall outside", message)
    assert outside is not None and int(outside.group(1)) >= 10


def test_offsets_that_contradict_the_clock_are_refused(bars: pd.DataFrame, tmp_path: Path) -> None:
    wrong = naive_in(bars[bars["ticker"] == "AAPL"], MARKET_TZ)  # New York clock, labelled UTC
    wrong["ts"] = wrong["ts"].dt.tz_localize("UTC")
    write_table(file_frame(wrong, stamps="as_is", with_ticker=False), tmp_path / "AAPL.csv")
    with pytest.raises(FileSourceError, match=r"America/New_York times written with a wrong"):
        FileSource(tmp_path, tz=MARKET_TZ).get_bars("AAPL", FIRST, END)


@pytest.mark.parametrize(("written", "read"), [("end", "start"), ("start", "end")])
def test_a_wrong_ts_label_is_warned_about_not_refused(
    written: str,
    read: str,
    bars: pd.DataFrame,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    aapl = bars[bars["ticker"] == "AAPL"]
    write_table(file_frame(aapl, ts_label=written, with_ticker=False), tmp_path / "AAPL.csv")
    with caplog.at_level(logging.WARNING, logger=file_source.__name__):
        served = FileSource(tmp_path, ts_label=read).get_bars("AAPL", FIRST, END)
    shift = pd.Timedelta(minutes=1 if written == "end" else -1)
    assert served["ts"].tolist() == (aapl["ts"] + shift).tolist()
    assert f"set QUANT_FILES_TS_LABEL={written}" in caplog.text


def test_dst_ambiguous_and_nonexistent_local_times_are_kept_counted_and_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wall = ["2026-03-06 09:30", "2026-03-08 02:30", "2026-11-01 01:30", "2026-11-01 01:30"]
    frame = pd.DataFrame({"ts": wall, "open": 5.0, "high": 5.0, "low": 5.0, "close": 5.0,
                          "volume": [1, 2, 3, 4]})  # fmt: skip
    write_table(frame, tmp_path / "AAPL.csv")
    with caplog.at_level(logging.WARNING, logger=file_source.__name__):
        served = FileSource(tmp_path, tz=MARKET_TZ).get_bars(
            "AAPL", ny("2026-03-01"), ny("2026-11-02")
        )
    utc = ["2026-03-06 14:30", "2026-03-08 07:30", "2026-11-01 05:30", "2026-11-01 05:30"]
    assert served["ts"].tolist() == [pd.Timestamp(t, tz="UTC") for t in utc]
    assert "1 ambiguous" not in caplog.text and "2 ambiguous" in caplog.text
    assert "1 nonexistent" in caplog.text
    assert validate_bars(served, TICKERS).reason_counts == {"outside_session": 3}


def test_tz_aware_stamps_ignore_the_zone_setting(
    bars: pd.DataFrame, market: SyntheticMarket, tmp_path: Path
) -> None:
    write_bars(bars, tmp_path, stamps="aware")
    source = FileSource(tmp_path, tz="Asia/Tokyo")
    pd.testing.assert_frame_equal(
        source.get_bars("MSFT", FIRST, END), market.get_bars("MSFT", FIRST, END)
    )


# --- corporate actions --------------------------------------------------------------------------
def test_corporate_actions_round_trip_the_synthetic_ledger(
    market: SyntheticMarket, tmp_path: Path
) -> None:
    files = write_market(market, tmp_path, FIRST, END)
    source = files.source()
    windows = [(None, None), (pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-20")),
               (ny("2026-03-10"), None)]  # fmt: skip
    assert len(market.get_splits("AAPL")) and len(market.get_dividends("NVDA"))
    for ticker in TICKERS:
        for start, end in windows:
            pd.testing.assert_frame_equal(
                source.get_splits(ticker, start, end), market.get_splits(ticker, start, end)
            )
            pd.testing.assert_frame_equal(
                source.get_dividends(ticker, start, end), market.get_dividends(ticker, start, end)
            )


def test_malformed_action_values_reach_the_ledger_validation(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    write_bars(bars, tmp_path)
    (tmp_path / "corporate_actions.csv").write_text(
        "Ticker,Ex_Date,Action,Value\n"
        "aapl,2026-03-02,Split,abc\n"
        "AAPL,someday,dividend,0.5\n"
        "MSFT,2026-03-03,split,-2\n"
        "MSFT,2026-03-04,dividend,0.25\n"
    )
    source = FileSource(tmp_path)
    late = (pd.Timestamp("2026-03-04"), pd.Timestamp("2026-03-31"))
    splits = pd.concat([source.get_splits(t) for t in TICKERS], ignore_index=True)
    dividends = pd.concat([source.get_dividends(t, *late) for t in TICKERS], ignore_index=True)
    assert len(splits) == 2 and splits["ratio"].isna().sum() == 1
    assert len(dividends) == 2 and dividends["ex_date"].isna().sum() == 1  # kept whatever range
    ledger = ledger_from_source(splits, dividends, "files", pd.Timestamp.now(tz="UTC"))
    check = validate_actions(ledger, TICKERS, today=pd.Timestamp("2026-12-31"))
    assert sorted(check.rejected["reason"]) == [
        "no ex-date", "split ratio must be > 0", "split ratio must be > 0",
    ]  # fmt: skip
    assert check.clean["value"].tolist() == [0.25]


def test_a_structurally_broken_actions_file_is_a_clear_error(
    bars: pd.DataFrame, tmp_path: Path
) -> None:
    write_bars(bars, tmp_path)
    (tmp_path / "corporate_actions.csv").write_text("symbol,date,ratio\nAAPL,2026-03-02,2\n")
    with pytest.raises(FileSourceError) as info:
        FileSource(tmp_path).get_splits("AAPL")
    message = str(info.value)
    assert "corporate_actions.csv" in message and "no column for ex_date, action, value" in message
    assert "found ['symbol', 'date', 'ratio']" in message and "expected ticker" in message
    (tmp_path / "corporate_actions.csv").write_text(
        "ticker,ex_date,action,value\nAAPL,2026-03-02,split,2\nAAPL,2026-03-03,spinoff,1\n"
    )
    with pytest.raises(FileSourceError, match=r"lines \[3\].*found actions \['spinoff'\]"):
        FileSource(tmp_path).get_dividends("AAPL")
    (tmp_path / "corporate_actions.csv").write_text(
        "ticker,ex_date,action,value\nAAPL,2026-03-02,split,2\n ,2026-03-03,split,2\n"
    )
    with pytest.raises(FileSourceError, match=r"lines \[3\]: every action needs a ticker"):
        FileSource(tmp_path).get_splits("AAPL")


def test_a_ledger_file_is_read_row_by_row_for_the_ledger_to_judge(tmp_path: Path) -> None:
    path = tmp_path / "ledger.csv"
    path.write_text(
        "Symbol,EX_DATE,Action,Value\n aapl ,2026-03-02,Split,2\n,2026-03-03,dividend,0.5\n"
        "MSFT,2026-03-04,spinoff,1\nMSFT,someday,dividend,x\n"
    )
    rows = read_actions_file(path)
    assert rows["line"].tolist() == [2, 3, 4, 5]
    assert rows["ticker"].tolist()[0] == "AAPL" and pd.isna(rows["ticker"].iloc[1])
    assert rows["action"].tolist() == ["split", "dividend", "spinoff", "dividend"]
    assert rows["ex_date"].iloc[0] == pd.Timestamp("2026-03-02") and pd.isna(rows["ex_date"][3])
    assert rows["value"].iloc[0] == 2.0 and np.isnan(rows["value"].iloc[3])
    with pytest.raises(FileSourceError, match="cannot be read"):
        read_actions_file(tmp_path / "missing.csv")


def test_no_actions_file_gives_empty_ledgers(bars: pd.DataFrame, tmp_path: Path) -> None:
    write_bars(bars, tmp_path)
    source = FileSource(tmp_path)
    assert source.get_splits("AAPL").empty and source.get_dividends("AAPL").empty
    assert list(source.get_splits("AAPL").columns) == ["ticker", "ex_date", "ratio"]


# --- clear errors -------------------------------------------------------------------------------
def test_folder_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileSourceError) as info:
        FileSource(tmp_path / "nowhere")
    assert f"{tmp_path / 'nowhere'} does not exist" in str(info.value)
    (tmp_path / "AAPL.csv").write_text("x")
    with pytest.raises(FileSourceError, match="is not a folder"):
        FileSource(tmp_path / "AAPL.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("bars go here")
    (empty / "corporate_actions.csv").write_text("ticker,ex_date,action,value\n")
    with pytest.raises(FileSourceError) as info:
        FileSource(empty)
    assert f"no bar files in {empty}" in str(info.value)
    assert "<TICKER>.csv, <TICKER>.csv.gz or <TICKER>.parquet" in str(info.value)


def test_settings_errors_name_the_setting(bars: pd.DataFrame, tmp_path: Path) -> None:
    write_bars(bars, tmp_path)
    with pytest.raises(FileSourceError, match=r"unknown time zone 'Mars/Base' \(QUANT_FILES_TZ\)"):
        FileSource(tmp_path, tz="Mars/Base")
    with pytest.raises(FileSourceError, match=r"'start' or 'end' \(QUANT_FILES_TS_LABEL\)"):
        FileSource(tmp_path, ts_label="middle")


def test_a_file_without_bar_columns_names_what_it_has_and_needs(tmp_path: Path) -> None:
    (tmp_path / "AAPL.csv").write_text("when,price,size\n2026-03-09 14:30,1,2\n")
    with pytest.raises(FileSourceError) as info:
        FileSource(tmp_path).get_bars("AAPL", FIRST, END)
    message = str(info.value)
    assert "AAPL.csv: no column for timestamp, open, high, low, close, volume" in message
    assert "found ['when', 'price', 'size']" in message
    assert "expected timestamp / datetime" in message and "open / o" in message


@pytest.mark.parametrize(
    ("name", "content"),
    [("AAPL.parquet", b"not parquet at all"), ("AAPL.csv.gz", b"not gzip"),
     ("AAPL.csv", b"")],
)  # fmt: skip
def test_an_unreadable_file_names_the_file_and_the_reason(
    name: str, content: bytes, tmp_path: Path
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(FileSourceError, match=rf"{name}: cannot be read: \w+"):
        FileSource(tmp_path).get_bars("AAPL", FIRST, END)


def test_unreadable_timestamps(bars: pd.DataFrame, tmp_path: Path, caplog) -> None:
    aapl = file_frame(bars[bars["ticker"] == "AAPL"], with_ticker=False)
    aapl["ts"] = aapl["ts"].astype(str)
    aapl.loc[aapl.index[[5, 9]], "ts"] = "soon"
    write_table(aapl, tmp_path / "AAPL.csv")
    with caplog.at_level(logging.WARNING, logger=file_source.__name__):
        served = FileSource(tmp_path).get_bars("AAPL", FIRST, END)
    assert len(served) == len(aapl) - 2
    assert "2 rows without a readable timestamp left out (data rows [6, 10]" in caplog.text
    write_table(aapl.assign(ts="soon"), tmp_path / "AAPL.csv")
    with pytest.raises(FileSourceError, match=r"AAPL.csv: no readable timestamp in ts"):
        FileSource(tmp_path).get_bars("AAPL", FIRST, END)


# --- properties and caching ---------------------------------------------------------------------
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_subset_and_order_of_rows_reads_back_as_the_same_bars(
    data: st.DataObject, bars: pd.DataFrame, tmp_path: Path
) -> None:
    pool = bars[bars["ts"] < ny("2026-03-05 10:30")].reset_index(drop=True)  # 3 tickers x 60
    rows = data.draw(st.lists(st.sampled_from(range(len(pool))), unique=True, max_size=len(pool)))
    fmt = data.draw(st.sampled_from(["csv", "parquet"]))
    written = pool.iloc[rows]
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    write_table(file_frame(written, stamps="aware"), folder / f"bars.{fmt}")
    source = FileSource(folder)
    for ticker in TICKERS:
        expected = written[written["ticker"] == ticker].sort_values("ts", ignore_index=True)
        got = source.get_bars(ticker, FIRST, END)
        pd.testing.assert_frame_equal(got, expected if len(expected) else empty_bars())


def test_served_by_slicing_without_rereading(
    bars: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    read_table = file_source._read_table

    def counting(path: Path, **kwargs: object) -> pd.DataFrame:
        reads.append(path.name)
        return read_table(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(file_source, "_read_table", counting)
    write_bars(bars[bars["ticker"] != "NVDA"], tmp_path)  # AAPL.csv, MSFT.csv
    write_table(file_frame(bars[bars["ticker"] == "NVDA"]), tmp_path / "more.parquet")
    source = FileSource(tmp_path)
    assert reads == []  # listing the folder reads no file
    source.get_bars("AAPL", FIRST, END)
    assert reads == ["AAPL.csv", "more.parquet"]  # the asked ticker's file and the shared one
    days = sessions(FIRST, END - pd.Timedelta(days=1))
    for _ in range(3):
        for ticker in TICKERS:
            for day in days:
                for hour in range(14, 21):
                    start = pd.Timestamp(f"{day.date()} {hour}:00", tz="UTC")
                    source.get_bars(ticker, start, start + pd.Timedelta(hours=1))
            source.coverage(ticker)
    assert sorted(reads) == ["AAPL.csv", "MSFT.csv", "more.parquet"]
