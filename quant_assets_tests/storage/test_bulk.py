"""Bulk writes and reads store and return exactly what SQLAlchemy's row-by-row paths did.

On SQLite the tuples sent by ``executemany`` are compared, value by value and storage class by
storage class, with what SQLAlchemy's ``execute(stmt, list_of_dicts)`` stores; on both backends
frames round-trip (NULL for NaN, ±inf, tz-aware timestamps to the microsecond, extreme floats
and integers) and upserts replace revised rows.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, Table, create_engine, delete, select

from quant_assets.features.spec import FEATURE_TABLE_COLUMNS
from quant_assets.storage import bulk
from quant_assets.storage.bulk import read_select
from quant_assets.storage.database import (
    insert_frame,
    to_db_timestamp,
    upsert_frame,
    write_to_db,
)
from quant_assets.storage.schema import adjusted_bars, features, labels, metadata, price_data

ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham")
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([np.nan, np.inf, -np.inf, 1.7976931348623157e308, 5e-324, 0.1 + 0.2]),
)
TICKERS = st.sampled_from(["AAPL", "BRK.B", "O'REILLY", 'Q"T', "ÄÖÜ", "x" * 32])
NS = st.integers(min_value=-(2**62), max_value=2**62)  # ns since 1970: 1824 … 2116
US = st.integers(min_value=-(2**52), max_value=2**52)  # µs since 1970: keys stay distinct


@st.composite
def label_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Rows for the labels table: nullable ints and timestamps, any float, awkward text."""
    keys = draw(st.lists(st.tuples(TICKERS, US), min_size=1, max_size=25, unique=True))
    n = len(keys)
    zone = draw(st.sampled_from(ZONES))
    # Below a microsecond: SQLite's text truncates, PostgreSQL rounds (no halves: no tie rule).
    sub_us = draw(st.lists(st.integers(0, 999).filter(lambda x: x != 500), min_size=n, max_size=n))
    ts = [k[1] * 1000 + extra for k, extra in zip(keys, sub_us, strict=True)]
    t1 = draw(st.lists(st.one_of(st.none(), NS), min_size=n, max_size=n))
    return pd.DataFrame(
        {
            "ticker": [k[0] for k in keys],
            "ts": pd.to_datetime(ts, unit="ns", utc=True).tz_convert(zone),
            "label": pd.array(
                draw(st.lists(st.sampled_from([-1, 0, 1, None]), min_size=n, max_size=n)),
                dtype="Int16",
            ),
            "t1": pd.to_datetime(t1, unit="ns", utc=True),
            "ret": draw(st.lists(FLOATS, min_size=n, max_size=n)),
            "sigma": draw(st.lists(FLOATS, min_size=n, max_size=n)),
            "label_spec": draw(st.sampled_from(['{"k":1}', "", "é" * 128])),
        }
    )


@st.composite
def bar_like_label_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Label rows whose stamps repeat a few days and times of day, as bars' do (the writer
    formats each distinct day and time once): before and after 1970, below a microsecond,
    missing ``t1``."""
    days = draw(st.lists(st.integers(-40_000, 40_000), min_size=1, max_size=3, unique=True))
    micros = draw(st.lists(st.integers(0, 86_400 * 10**6 - 1), min_size=1, max_size=3, unique=True))
    # below a microsecond: truncated by the text (no two stamps may truncate to one key)
    times = [us * 1000 + draw(st.integers(0, 999)) for us in micros]
    stamps = st.builds(
        lambda d, t: d * 86_400 * 10**9 + t, st.sampled_from(days), st.sampled_from(times)
    )
    keys = draw(st.lists(st.tuples(TICKERS, stamps), min_size=16, max_size=60, unique=True))
    n = len(keys)
    t1 = draw(st.lists(st.one_of(st.none(), stamps), min_size=n, max_size=n))
    return pd.DataFrame(
        {
            "ticker": [k[0] for k in keys],
            "ts": pd.to_datetime([k[1] for k in keys], unit="ns", utc=True),
            "label": pd.array(
                draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)), dtype="Int16"
            ),
            "t1": pd.to_datetime(t1, unit="ns", utc=True),
            "ret": draw(st.lists(FLOATS, min_size=n, max_size=n)),
            "sigma": 1.0,
            "label_spec": '{"k":1}',
        }
    )


def feature_frame(n: int = 40, seed: int = 3) -> pd.DataFrame:
    """Feature rows: a bool column and floats with NaN, ±inf and extremes."""
    rng = np.random.default_rng(seed)
    specials = np.array([np.nan, np.inf, -np.inf, 1e308, -5e-324, 1e-300])
    frame = pd.DataFrame(
        {
            "ticker": "AAPL",
            "ts": pd.date_range("2026-03-02 14:30", periods=n, freq="min", tz="UTC"),
        }
    )
    for name in FEATURE_TABLE_COLUMNS:
        if name in ("ticker", "ts"):
            continue
        if name == "warm":
            frame[name] = rng.random(n) < 0.5
        else:
            values = rng.normal(size=n) * 10.0 ** rng.integers(-10, 10, n)
            pick = rng.random(n) < 0.3
            values[pick] = rng.choice(specials, int(pick.sum()))
            frame[name] = values
    return frame.assign(feature_version="v1")


def adjusted_frame(n: int = 30) -> pd.DataFrame:
    """Adjusted-bar rows: a Date column given as datetime64 and floats."""
    ts = pd.date_range("2026-03-02 14:30", periods=n, freq="min", tz="UTC")
    prices = np.linspace(1e-4, 1e6, n)
    return pd.DataFrame(
        {
            "ticker": "AAPL",
            "ts": ts,
            "session": ts.tz_convert("America/New_York").tz_localize(None).normalize(),
            **{c: prices for c in ("open", "high", "low", "close")},
            "volume": np.full(n, 2.0**62),
            "split_close": prices,
            **{c: np.full(n, 0.97) for c in ("price_factor", "split_factor", "volume_factor")},
            "built_at": pd.Timestamp("2026-03-03 01:02:03.456789123", tz="Europe/Berlin"),
        }
    )


def dict_path_insert(engine: Engine, table: Table, df: pd.DataFrame) -> None:
    """What the storage layer sent before: one dict per row through SQLAlchemy."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):
            out[col] = out[col].dt.tz_convert("UTC").dt.tz_localize(None)
        elif isinstance(out[col].dtype, np.dtype) and out[col].dtype.kind == "M":
            out[col] = pd.Series(out[col].dt.date, index=out.index, dtype=object)
    records = out.astype(object).where(out.notna(), None).to_dict("records")
    with engine.begin() as conn:
        conn.execute(table.insert(), records)


def stored(engine: Engine, table: Table) -> list[tuple]:
    """Every stored value with its SQLite storage class, in key order (no type processing)."""
    cols = ", ".join(f'typeof("{c.name}"), "{c.name}"' for c in table.columns)
    keys = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT {cols} FROM {table.name} ORDER BY {keys}").all()


def sqlite_pair() -> tuple[Engine, Engine]:
    engines = create_engine("sqlite://"), create_engine("sqlite://")
    for engine in engines:
        metadata.create_all(engine)
    return engines


@hypothesis_settings(max_examples=80, deadline=None)
@given(frame=st.one_of(label_frames(), bar_like_label_frames()))
def test_sqlite_tuples_store_what_the_dict_path_stored(frame: pd.DataFrame) -> None:
    old, new = sqlite_pair()
    dict_path_insert(old, labels, frame)
    with new.begin() as conn:
        assert upsert_frame(conn, "labels", frame) == len(frame)
    assert stored(new, labels) == stored(old, labels)


@hypothesis_settings(max_examples=40, deadline=None)
@given(frame=label_frames(), duplicate=st.booleans())
def test_a_frame_in_key_order_stores_what_a_shuffled_one_stores(
    frame: pd.DataFrame, duplicate: bool
) -> None:
    """The upsert skips its duplicate check and sort for rows already in strict key order (as
    the builders make them): the stored rows are the same, and a duplicate is still refused."""
    in_order = frame.assign(utc=frame["ts"].dt.tz_convert("UTC"))
    in_order = in_order.sort_values(["ticker", "utc"]).drop(columns="utc")
    if duplicate:
        in_order = pd.concat([in_order, in_order.iloc[-1:]], ignore_index=True)
    shuffled, ordered = sqlite_pair()
    if duplicate:
        with ordered.begin() as conn, pytest.raises(ValueError, match="duplicate primary keys"):
            upsert_frame(conn, "labels", in_order)
        return
    with shuffled.begin() as conn:
        upsert_frame(conn, "labels", frame.sample(frac=1.0, random_state=1))
    with ordered.begin() as conn:
        assert upsert_frame(conn, "labels", in_order) == len(frame)
    assert stored(ordered, labels) == stored(shuffled, labels)


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    frame=label_frames(),
    per_statement=st.integers(2, 7),
    block=st.integers(1, 12),
    changed=st.data(),
)
def test_many_rows_per_statement_store_and_count_what_one_row_per_statement_does(
    frame: pd.DataFrame, per_statement: int, block: int, changed: st.DataObject
) -> None:
    """Rows go to SQLite many per INSERT (whole groups, made a block of rows at a time) and
    the rest one by one: the stored rows and the changed-row counts of a first write and of
    a revision are those of one row per statement."""
    revised = frame.copy()
    picked = changed.draw(st.lists(st.integers(0, len(frame) - 1), unique=True))
    revised.loc[revised.index[picked], "ret"] = -0.125  # a value no strategy draws
    counts = {}
    for per in (1, per_statement):
        engine = create_engine("sqlite://")
        metadata.create_all(engine)
        with (
            mock.patch.object(bulk, "ROWS_PER_STATEMENT", per),
            mock.patch.object(bulk, "BLOCK_ROWS", block),
            engine.begin() as conn,
        ):
            first = upsert_frame(conn, "labels", frame)
            again = upsert_frame(conn, "labels", revised)
        counts[per] = (first, again, stored(engine, labels))
    assert counts[per_statement] == counts[1]
    assert counts[1][:2] == (len(frame), int((frame["ret"] != -0.125).iloc[picked].sum()))


@pytest.mark.parametrize(
    ("table", "frame"), [(features, feature_frame()), (adjusted_bars, adjusted_frame())]
)
def test_bool_date_and_float_columns_store_what_the_dict_path_stored(
    table: Table, frame: pd.DataFrame
) -> None:
    old, new = sqlite_pair()
    dict_path_insert(old, table, frame)
    with new.begin() as conn:
        insert_frame(conn, table.name, frame)
    assert stored(new, table) == stored(old, table)


def expected_read(frame: pd.DataFrame, engine: Engine) -> pd.DataFrame:
    """``frame`` as a read gives it back: key order, UTC to the microsecond (SQLite's text
    truncates what is below, PostgreSQL rounds it)."""
    out = frame.sort_values(["ticker", "ts"], ignore_index=True)
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):
            utc = out[col].dt.tz_convert("UTC")
            utc = utc.dt.round("us") if engine.dialect.name == "postgresql" else utc.dt.floor("us")
            out[col] = utc.astype("datetime64[ns, UTC]")
    return out


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=label_frames())
def test_label_rows_round_trip(engine: Engine, frame: pd.DataFrame) -> None:
    with engine.begin() as conn:
        conn.execute(delete(labels))
    assert write_to_db(frame, "labels", engine) == len(frame)
    with engine.connect() as conn:
        back = read_select(conn, select(labels).order_by(labels.c.ticker, labels.c.ts))
    want = expected_read(frame, engine)
    back["label"] = back["label"].astype("Int16")
    back["ticker"] = back["ticker"].astype(object)
    back["label_spec"] = back["label_spec"].astype(object)
    pd.testing.assert_frame_equal(back, want, check_dtype=False)
    for col in ("ts", "t1"):
        assert str(back[col].dtype) == "datetime64[ns, UTC]"


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=label_frames(), block=st.integers(1, 4))
def test_a_read_in_blocks_is_the_read_at_once(
    engine: Engine, frame: pd.DataFrame, block: int
) -> None:
    """Blocks of a few rows, some with a NULL in an integer or timestamp column and some
    without, join into the frame one block gives: the same values and the same dtypes."""
    with engine.begin() as conn:
        conn.execute(delete(labels))
    write_to_db(frame, "labels", engine)
    query = select(labels).order_by(labels.c.ticker, labels.c.ts)
    with engine.connect() as conn:
        at_once = read_select(conn, query)
        with mock.patch.object(bulk, "BLOCK_ROWS", block):
            in_blocks = read_select(conn, query)
    pd.testing.assert_frame_equal(in_blocks, at_once)
    assert [type(v) for v in in_blocks["label"]] == [type(v) for v in at_once["label"]]


def test_feature_rows_round_trip_and_an_upsert_replaces(engine: Engine) -> None:
    frame = feature_frame()
    assert write_to_db(frame, "features", engine) == len(frame)
    assert write_to_db(frame, "features", engine) == 0  # identical rows: nothing rewritten
    revised = frame.iloc[[0, 5]].assign(rsi_14=[np.nan, -np.inf], warm=[True, False])
    revised.loc[revised.index[0], "feature_version"] = "v2"
    assert write_to_db(revised, "features", engine) == 2
    want = frame.copy()
    want.loc[revised.index, revised.columns] = revised
    with engine.connect() as conn:
        back = read_select(conn, select(features).order_by(features.c.ts))
    back["warm"] = back["warm"].astype(bool)
    pd.testing.assert_frame_equal(back, want, check_dtype=False)


def test_adjusted_rows_round_trip(engine: Engine) -> None:
    frame = adjusted_frame()
    with engine.begin() as conn:
        assert insert_frame(conn, "adjusted_bars", frame) == len(frame)
    with engine.connect() as conn:
        back = read_select(conn, select(adjusted_bars).order_by(adjusted_bars.c.ts))
    assert pd.to_datetime(back["session"]).tolist() == frame["session"].tolist()
    want = expected_read(frame, engine).drop(columns="session")
    pd.testing.assert_frame_equal(back.drop(columns="session"), want, check_dtype=False)


def test_reads_equal_the_row_path(engine: Engine) -> None:
    bars = pd.DataFrame(
        {
            "ticker": ["A", "A", "B", "C"],
            "ts": pd.to_datetime(["2026-03-02 14:30:00.000001"] * 4, utc=True)
            + pd.to_timedelta([0, 60, 0, 0], unit="s"),
            "open": [1.0, np.inf, 1e-300, 0.1 + 0.2],
            "high": [2.0, 2.0, 2.0, 2.0],
            "low": [0.5, 0.5, 0.5, 0.5],
            "close": [1.5, 1.5, 1.5, 1.5],
            "volume": [0, 2**62, 1, 7],
        }
    )
    write_to_db(bars, "price_data", engine)
    query = (
        select(price_data)
        .where(
            price_data.c.ticker.in_(["A", "C"]),
            price_data.c.volume < 2**40,
            price_data.c.ts >= to_db_timestamp(bars["ts"].min(), engine),
        )
        .order_by(price_data.c.ticker, price_data.c.ts)
    )
    with engine.connect() as conn:
        fast = read_select(conn, query)
        rows = pd.DataFrame(conn.execute(query).fetchall(), columns=fast.columns)
    assert fast["ticker"].tolist() == rows["ticker"].tolist() == ["A", "C"]
    assert fast["ts"].tolist() == pd.to_datetime(rows["ts"], utc=True).tolist()
    assert fast["open"].tolist() == rows["open"].tolist() == [1.0, 0.1 + 0.2]
    assert fast["volume"].tolist() == rows["volume"].tolist() == [0, 7]


def test_an_empty_read_has_the_selected_columns(engine: Engine) -> None:
    with engine.connect() as conn:
        frame = read_select(conn, select(labels.c.ts, labels.c.ret))
    assert list(frame.columns) == ["ts", "ret"] and frame.empty
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
