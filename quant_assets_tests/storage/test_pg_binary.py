"""Binary COPY of fixed-width columns: what the server sends comes back exactly, and a stream
that is not the layout asked for is refused with the reason, never read shifted."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    select,
)

from quant_assets.storage.database import create_db_engine
from quant_assets.storage.pg_binary import (
    POSTGRES_EPOCH_US,
    SIGNATURE,
    BinaryCopyError,
    binary_copy_buffer,
    copy_binary,
    parse_binary,
)

TYPES = (("k", "int4"), ("n", "int8"), ("x", "float8"), ("ts", "timestamptz"))
FORMAT = {"int4": ">i", "int8": ">q", "float8": ">d", "timestamptz": ">q"}


def stream(rows: list[tuple], types=TYPES, lengths: dict[int, int] | None = None) -> bytes:
    """A binary COPY stream written field by field with ``struct`` (as the server does)."""
    out = [SIGNATURE, struct.pack(">ii", 0, 0)]
    for row in rows:
        out.append(struct.pack(">h", len(row)))
        for i, ((_, kind), value) in enumerate(zip(types, row, strict=True)):
            data = struct.pack(FORMAT[kind], value)
            out.append(struct.pack(">i", (lengths or {}).get(i, len(data))) + data)
    out.append(b"\xff\xff")
    return b"".join(out)


row_values = st.tuples(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.integers(-(2**40), 2**40),  # µs since 2000-01-01: about ±12 days
)


@given(st.lists(row_values, max_size=30))
def test_every_fixed_width_value_round_trips(rows: list[tuple]) -> None:
    got = parse_binary(stream(rows), TYPES)
    assert list(got) == ["k", "n", "x", "ts"]
    assert got["k"].tolist() == [r[0] for r in rows]
    assert got["n"].tolist() == [r[1] for r in rows]
    assert got["x"].tolist() == [r[2] for r in rows]
    stamps = got["ts"].astype("datetime64[us]").astype(np.int64) - POSTGRES_EPOCH_US
    assert stamps.tolist() == [r[3] for r in rows]
    assert got["ts"].dtype == np.dtype("datetime64[ns]")


def test_a_null_a_wrong_type_or_a_broken_stream_is_refused() -> None:
    rows = [(1, 2, 3.0, 4), (5, 6, 7.0, 8)]
    good = stream(rows)
    with pytest.raises(BinaryCopyError, match="signature"):
        parse_binary(b"X" + good[1:], TYPES)
    with pytest.raises(BinaryCopyError, match="trailer"):
        parse_binary(good[:-2], TYPES)
    with pytest.raises(BinaryCopyError, match="whole rows"):
        parse_binary(good[:-3] + good[-2:], TYPES)
    with pytest.raises(BinaryCopyError, match="column x"):
        parse_binary(stream(rows, lengths={2: 9}), TYPES)  # same size, wrong length field
    with pytest.raises(BinaryCopyError, match="fields"):
        parse_binary(good[:19] + struct.pack(">h", 5) + good[21:], TYPES)  # a tuple's count
    with pytest.raises(ValueError, match="reads only"):
        parse_binary(good, (("k", "text"),))


@pytest.fixture
def pg_engine(settings_for) -> Iterator[Engine]:
    engine = create_db_engine(settings_for("postgresql"))
    yield engine
    engine.dispose()


def test_the_server_stream_reads_as_sent(pg_engine: Engine) -> None:
    sql = (
        "SELECT g::int4 AS k, (g * 10000000000)::int8 AS n, g / 3.0::float8 AS x, "
        "TIMESTAMPTZ '2026-03-02 14:30:00+00' + g * INTERVAL '1 minute' AS ts "
        "FROM generate_series(%(lo)s, %(hi)s) AS g"
    )
    with pg_engine.connect() as conn:
        got = copy_binary(conn, sql, {"lo": -2, "hi": 1000}, TYPES)
        empty = copy_binary(conn, sql, {"lo": 1, "hi": 0}, TYPES)
    g = np.arange(-2, 1001)
    assert got["k"].tolist() == g.tolist() and got["n"].tolist() == (g * 10**10).tolist()
    np.testing.assert_array_equal(got["x"], g / 3.0)
    expected = np.datetime64("2026-03-02T14:30", "ns") + g.astype("timedelta64[m]")
    np.testing.assert_array_equal(got["ts"], expected)
    assert all(len(v) == 0 for v in empty.values())


def test_a_null_from_the_server_is_refused(pg_engine: Engine) -> None:
    sql = "SELECT 1::int4, NULL::int8, 2.0::float8, now()"
    with pytest.raises(BinaryCopyError, match="NULL"), pg_engine.connect() as conn:
        copy_binary(conn, sql, {}, TYPES)


ALL_TYPES = Table(
    "binary_copy_types",
    MetaData(),
    Column("row", Integer, primary_key=True),
    Column("name", String(16)),
    Column("note", Text),
    Column("at", DateTime(timezone=True)),
    Column("day", Date),
    Column("x", Float),
    Column("flag", Boolean),
    Column("small", SmallInteger),
    Column("big", BigInteger),
)

texts = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\x00")))
stamps = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.text("AB", max_size=16)),
        texts,
        stamps,
        st.one_of(st.none(), st.dates(date(1990, 1, 1), date(2100, 1, 1))),
        st.one_of(st.none(), st.floats(allow_nan=False)),
        st.one_of(st.none(), st.booleans()),
        st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1)),
        st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    ),
    max_size=25,
)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=rows)
def test_written_rows_read_back_as_sent_in_frame_order(pg_engine: Engine, values) -> None:
    columns = list(zip(*values, strict=True)) if values else [()] * 8
    dtypes = (object, object, object, object, "float64", "boolean", "Int16", "Int64")
    frame = pd.DataFrame(
        {
            "row": np.arange(len(values)),
            **{
                c.name: pd.Series(list(v), dtype=d)
                for c, v, d in zip(ALL_TYPES.columns[1:], columns, dtypes, strict=True)
            },
        }
    )
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    with pg_engine.begin() as conn:
        ALL_TYPES.drop(conn, checkfirst=True)
        ALL_TYPES.create(conn)
        cursor = conn.connection.driver_connection.cursor()
        cursor.copy_expert(
            "COPY binary_copy_types FROM STDIN WITH (FORMAT binary)",
            binary_copy_buffer(frame, ALL_TYPES),
        )
        back = conn.execute(select(ALL_TYPES).order_by(ALL_TYPES.c.row)).all()
    assert len(back) == len(values)
    for got, want in zip(back, values, strict=True):
        name, note, at, day, x, flag, small, big = want
        assert got.name == name and got.note == note and got.day == day
        assert got.at == at
        assert got.x == x and got.flag == flag and got.small == small and got.big == big


def test_an_integer_outside_its_column_type_is_refused_not_wrapped() -> None:
    frame = pd.DataFrame({"row": [1, 2], "small": [1, 40_000]})
    with pytest.raises(ValueError, match="small: values outside"):
        binary_copy_buffer(frame, ALL_TYPES)
