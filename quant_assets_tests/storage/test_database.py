"""The database manager on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import Engine, inspect, text

from quant_assets.settings import Settings
from quant_assets.storage.bars import read_bars, write_bars
from quant_assets.storage.database import (
    DatabaseUnavailableError,
    _strictly_increasing,
    create_db_engine,
    read_from_db,
    refresh_statistics,
    write_to_db,
)
from quant_assets.storage.ephemeral_postgres import EphemeralPostgres, free_port
from quant_assets_tests.storage.helpers import DAY_OPEN, bars


def count(engine: Engine, table: str = "price_data") -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def test_schema_has_every_table(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {"price_data", "corporate_actions", "backfill_queue", "bar_quarantine"} <= names


def test_upsert_is_idempotent(engine: Engine) -> None:
    frame = bars(n=50)
    assert write_bars(frame, engine) == 50
    assert write_bars(frame, engine) == 0  # identical rows: nothing rewritten
    assert write_bars(frame.sample(frac=1, random_state=1), engine) == 0
    assert count(engine) == 50
    stored = read_bars(engine, ["AAPL"], DAY_OPEN, DAY_OPEN + pd.Timedelta(hours=1))
    pd.testing.assert_frame_equal(stored, write_bars_expected(frame))


def write_bars_expected(frame: pd.DataFrame) -> pd.DataFrame:
    from quant_assets.market.frames import as_bar_dtypes

    return as_bar_dtypes(frame).sort_values(["ticker", "ts"], ignore_index=True)


def test_upsert_replaces_a_revised_bar(engine: Engine) -> None:
    frame = bars(n=3)
    write_bars(frame, engine)
    revised = frame.iloc[[2]].assign(close=frame["close"].iloc[2] + 0.05, volume=9999)
    assert write_bars(revised, engine) == 1
    stored = read_bars(engine, ["AAPL"], DAY_OPEN, DAY_OPEN + pd.Timedelta(hours=1))
    assert stored["volume"].tolist()[-1] == 9999
    assert count(engine) == 3


def test_write_refuses_unknown_columns_and_duplicate_keys(engine: Engine) -> None:
    with pytest.raises(ValueError, match="not in table"):
        write_to_db(bars().assign(extra=1), "price_data", engine)
    with pytest.raises(ValueError, match="duplicate primary keys"):
        write_to_db(pd.concat([bars(n=2), bars(n=2)]), "price_data", engine)
    with pytest.raises(ValueError, match="at most 32 characters"):
        write_to_db(bars(ticker="X" * 33), "price_data", engine)
    with pytest.raises(ValueError, match="unknown table"):
        write_to_db(bars(), "no_such_table", engine)
    assert count(engine) == 0


def test_hostile_ticker_is_stored_as_data_never_executed(engine: Engine) -> None:
    hostile = "x'); drop table price_data;--"
    write_to_db(bars(ticker=hostile, n=2), "price_data", engine)
    found = read_from_db(
        "SELECT ticker, COUNT(*) AS n FROM price_data WHERE ticker = :t GROUP BY ticker",
        engine,
        params={"t": hostile},
    )
    assert found["ticker"].tolist() == [hostile]
    assert found["n"].tolist() == [2]
    assert "price_data" in inspect(engine).get_table_names()


def test_read_from_db_parses_utc(engine: Engine) -> None:
    write_bars(bars(n=2), engine)
    frame = read_from_db("SELECT ts FROM price_data ORDER BY ts", engine, utc_columns=["ts"])
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].iloc[0] == DAY_OPEN


@pytest.mark.postgres
def test_password_never_in_repr_or_logs(settings_for, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for("postgresql")
    caplog.set_level(logging.DEBUG)
    engine = create_db_engine(settings)
    password = settings.sqlalchemy_url().password
    assert password and password not in settings.safe_url()
    assert password not in repr(engine) and password not in str(engine.url)
    assert password not in repr(settings)
    engine.dispose()
    assert "connected to" in caplog.text
    assert password not in caplog.text


def test_db_parts_from_seed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DB_HOST": "db.internal",
        "DB_USER": "quant",
        "DB_PASSWORD": "s3cr3t-pw",
        "DB_NAME": "bars",
        "DB_PORT": "6543",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    url = settings.sqlalchemy_url()
    parts = (url.host, url.port, url.username, url.database)
    assert parts == ("db.internal", 6543, "quant", "bars")
    assert url.password == "s3cr3t-pw"
    assert "s3cr3t-pw" not in settings.safe_url() and "s3cr3t-pw" not in repr(settings)


@pytest.mark.postgres
def test_engine_waits_for_a_server_that_starts_late() -> None:
    server = EphemeralPostgres(database="late")
    server.init()
    settings = Settings(
        database_url=SecretStr(server.url.render_as_string(hide_password=False)),
        db_connect_attempts=10,
        db_connect_backoff_s=0.5,
        _env_file=None,
    )
    starter = threading.Timer(2.0, server.start)
    starter.start()
    began = time.monotonic()
    try:
        engine = create_db_engine(settings)
        assert time.monotonic() - began >= 1.5  # it really had to wait
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        engine.dispose()
    finally:
        starter.join()
        server.stop()


def test_engine_gives_a_clear_error_when_no_server(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        database_url=SecretStr(f"postgresql+psycopg2://u:topsecret@127.0.0.1:{free_port()}/x"),
        db_connect_attempts=2,
        db_connect_backoff_s=0.05,
        _env_file=None,
    )
    with pytest.raises(DatabaseUnavailableError, match="did not answer after 2 attempts") as err:
        create_db_engine(settings)
    assert "topsecret" not in str(err.value)
    assert "topsecret" not in caplog.text


def test_refresh_statistics_tells_postgresql_how_full_a_table_just_filled_is(
    engine: Engine,
) -> None:
    """Right after a bulk write the planner's count is stale (autovacuum waits for its nap);
    refreshed, it is the table's row count. SQLite needs and gets nothing."""
    write_bars(bars("AAPL", n=300), engine)
    refresh_statistics(engine, "price_data")  # no error on either backend
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        counted = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'price_data'")
        ).scalar_one()
    assert counted == 300


def test_frame_built_by_concat_with_an_empty_part_is_written_intact(engine: Engine) -> None:
    # Arrow writes garbage for unequally chunked columns unless the COPY path combines chunks.
    frame = pd.concat([bars(n=0), bars(n=3)], ignore_index=True)
    frame["ticker"] = frame["ticker"].astype("string")
    assert write_bars(frame, engine) == 3
    stored = read_bars(engine, ["AAPL"], DAY_OPEN, DAY_OPEN + pd.Timedelta(hours=1))
    assert stored["ticker"].tolist() == ["AAPL"] * 3


@pytest.mark.postgres
def test_a_refused_password_is_reported_at_once_with_the_cause(pg_server) -> None:
    url = pg_server.url.set(password="wrong-password-123")
    settings = Settings(
        database_url=SecretStr(url.render_as_string(hide_password=False)),
        db_connect_attempts=6,
        db_connect_backoff_s=2.0,
        _env_file=None,
    )
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="password authentication failed") as err:
        create_db_engine(settings)
    assert time.monotonic() - began < 5  # not retried: waiting cannot fix a wrong password
    assert "wrong-password-123" not in str(err.value)


@pytest.mark.postgres
def test_concurrent_upserts_of_shuffled_frames_never_abort(settings_for) -> None:
    """Four writers upsert the same keys in different row orders at once: no batch is lost."""
    settings = settings_for("postgresql")
    engine = create_db_engine(settings)
    frames = [
        pd.concat([bars(t, n=200, price=100 + k) for t in ("AAPL", "MSFT", "NVDA")])
        .sample(frac=1.0, random_state=k)
        .reset_index(drop=True)
        for k in range(4)
    ]
    errors: list[BaseException] = []

    def writer(frame: pd.DataFrame) -> None:
        try:
            for _ in range(5):
                write_bars(frame, engine)
        except BaseException as err:  # collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert errors == []
    assert count(create_db_engine(settings)) == 600


@given(
    keys=st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C", None]),
            st.one_of(st.none(), st.integers(0, 5)),
        ),
        max_size=12,
    )
)
def test_strictly_increasing_keys_mean_unique_and_sorted(keys: list[tuple]) -> None:
    frame = pd.DataFrame(
        {
            "ticker": pd.array([k[0] for k in keys], dtype="string"),
            "ts": pd.to_datetime([k[1] for k in keys], unit="m", utc=True),
        }
    )
    complete = all(t is not None and m is not None for t, m in keys)
    in_order = all(a < b for a, b in itertools.pairwise(keys)) if complete else False
    assert _strictly_increasing(frame, ["ticker", "ts"]) == (in_order or len(keys) < 2)
