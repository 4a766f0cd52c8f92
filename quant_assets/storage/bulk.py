"""Bulk row transfer without a dict or ``Row`` per row: frames to DBAPI parameter tuples, query
results straight into columns.

Writes on SQLite: each column is converted at once to the values SQLAlchemy's bind processors
would send (naive-UTC timestamp text, ``YYYY-MM-DD`` dates, 0/1 booleans, floats — a NaN is
stored as NULL by SQLite itself; a repeated text or day is converted once) and sent by the
sqlite3 cursor's ``executemany`` of the statement SQLAlchemy compiles, with its ``VALUES`` row
repeated so that one execution stores up to ``ROWS_PER_STATEMENT`` rows: the same stored values
and changed-row count as ``Connection.execute(stmt, list_of_dicts)``. Columns of a dtype not
converted here fall back to SQLAlchemy's own processor per value.

Reads skip SQLAlchemy's ``Row`` objects and result processors: on SQLite the DBAPI cursor's
tuples become columns (``fetch_columns``); on PostgreSQL the query runs as ``COPY (…) TO
STDOUT`` and Arrow's CSV reader parses it (the bar tables' reads of named tickers use binary
COPY instead: ``bars.read_ticker_rows``). Timestamps come back as ``datetime64[ns, UTC]`` on
both.

On SQLite both directions make the Python objects ``BLOCK_ROWS`` rows at a time, so that they
are made, used and freed while they are in the CPU's cache (measured 0.65–0.9× the time of
making all of a ticker's at once, and the tuples of a large read never all exist at once).
"""

from __future__ import annotations

import functools
import gc
import io
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as arrow_csv
from sqlalchemy import Boolean, Connection, Date, DateTime, Float, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

# Rows per INSERT on SQLite: a VALUES list of many rows runs ~20% faster than one execution
# per row (fewer statement resets and steps), kept under SQLite's oldest parameter limit.
ROWS_PER_STATEMENT = 50
SQLITE_MAX_PARAMETERS = 999
# Rows turned into (or from) Python objects at a time on SQLite (~100 kB to 300 kB of them).
BLOCK_ROWS = 256


def sqlite_executemany(conn: Connection, stmt: Insert, df: pd.DataFrame) -> int:
    """Execute ``stmt`` for every row of ``df`` (its columns bound by name) on SQLite, many
    rows per execution; return the rows changed, as ``Connection.execute(stmt, records)``
    does."""
    sql, order = _compiled(stmt, tuple(df.columns), conn.dialect)
    unknown = sorted(set(order) - set(df.columns))
    if unknown:
        raise ValueError(f"statement binds {unknown}, which the frame lacks")
    table = stmt.table
    columns = [sqlite_column(df[name], table.c[name].type, conn) for name in order]
    cursor = conn.connection.driver_connection.cursor()
    try:
        changed = 0
        for text, params in _batches(sql, columns, len(df)):
            cursor.executemany(text, params)
            changed += cursor.rowcount
        return changed
    finally:
        cursor.close()


def _batches(
    sql: str, columns: list[np.ndarray], n: int
) -> Iterator[tuple[str, Iterable[Sequence[Any]]]]:
    """(statement, parameter rows) pairs covering the ``n`` rows of ``columns`` in order:
    whole groups of rows through the many-row form of ``sql``, the rest one row at a time."""
    per_statement = min(ROWS_PER_STATEMENT, SQLITE_MAX_PARAMETERS // max(len(columns), 1))
    many = _many_rows_sql(sql, len(columns), per_statement) if per_statement > 1 else None
    whole = n - n % per_statement if many else 0
    if not whole:
        yield sql, zip(*(c.tolist() for c in columns), strict=True)
        return
    block = per_statement * max(1, BLOCK_ROWS // per_statement)
    for first in range(0, whole, block):
        grid = _object_grid(columns, first, min(first + block, whole))
        # each row of the reshaped grid is per_statement consecutive rows, flattened
        yield many, grid.reshape(len(grid) // per_statement, -1).tolist()
    if whole < n:
        yield sql, _object_grid(columns, whole, n).tolist()


def _object_grid(columns: list[np.ndarray], first: int, last: int) -> np.ndarray:
    """Rows ``first:last`` of ``columns`` as a 2-D object array (numbers become Python floats
    and ints here, as ``tolist`` makes them)."""
    grid = np.empty((last - first, len(columns)), dtype=object)
    for j, values in enumerate(columns):
        grid[:, j] = values[first:last]
    return grid


@functools.lru_cache(maxsize=256)
def _compiled(stmt: Insert, columns: tuple[str, ...], dialect: Dialect) -> tuple[str, list[str]]:
    """The SQL text and parameter order of ``stmt`` binding ``columns`` (compiled once)."""
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    return compiled.string, list(compiled.positiontup or [])


@functools.lru_cache(maxsize=256)
def _many_rows_sql(sql: str, parameters: int, rows: int) -> str | None:
    """``sql``'s ``VALUES (?, …)`` repeated for ``rows`` rows, or None when the statement
    binds anything besides that one row of parameters (its order would no longer hold)."""
    head, found, rest = sql.partition(" VALUES (")
    group, _, tail = rest.partition(")")
    placeholders = [p.strip() for p in group.split(",")]
    if not found or placeholders != ["?"] * parameters or sql.count("?") != parameters:
        return None
    values = ", ".join([f"({group})"] * rows)
    return f"{head} VALUES {values}{tail}"


def sqlite_column(values: pd.Series, sql_type: TypeEngine, conn: Connection) -> np.ndarray:
    """One column as an array whose elements, as Python objects (``tolist``), are the values
    SQLAlchemy's SQLite bind processor gives for them: floats and integers stay numeric arrays
    (converted once, where the rows are made), anything else is an object array."""
    dtype = values.dtype
    if isinstance(sql_type, DateTime) and pd.api.types.is_datetime64_any_dtype(dtype):
        return _datetime_text(values, "us")
    if isinstance(sql_type, Date) and pd.api.types.is_datetime64_any_dtype(dtype):
        return _datetime_text(values, "D")
    if isinstance(sql_type, Float) and pd.api.types.is_numeric_dtype(dtype):
        # SQLite stores a bound NaN as NULL (sqlite3VdbeMemSetDouble), as the None sent before.
        return values.to_numpy(dtype="float64", na_value=np.nan)
    if isinstance(sql_type, Boolean) and dtype == np.dtype(bool):
        return values.to_numpy(dtype="int64")
    if isinstance(sql_type, Integer) and getattr(dtype, "kind", "") == "i" and not values.hasnans:
        return values.to_numpy(dtype="int64")  # signed, so it fits; Int16 labels too
    if isinstance(sql_type, String) and isinstance(dtype, pd.StringDtype):
        return _repeated_text(values, sql_type, conn)
    return _processed(values.to_numpy(dtype=object), sql_type, conn)


def _processed(objects: np.ndarray, sql_type: TypeEngine, conn: Connection) -> np.ndarray:
    """Values exactly as the dict path treated them: None for NA, then the type's processor."""
    missing = pd.isna(objects)
    if missing.any():
        objects = objects.copy()
        objects[missing] = None
    process = sql_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    if process is None:
        return objects
    return np.fromiter((process(v) for v in objects.tolist()), dtype=object, count=len(objects))


def _repeated_text(values: pd.Series, sql_type: TypeEngine, conn: Connection) -> np.ndarray:
    """A text column as ``_processed`` gives it, each distinct value converted once (a ticker
    or a spec tag repeats over every row of a frame)."""
    codes, distinct = pd.factorize(values)
    lookup = np.empty(len(distinct) + 1, dtype=object)
    lookup[:-1] = _processed(np.asarray(distinct, dtype=object), sql_type, conn)
    lookup[-1] = None  # the code of a missing value, -1, picks the last entry
    return lookup[codes]


MICROS_PER_DAY = 86_400_000_000


def _datetime_text(values: pd.Series, unit: str) -> np.ndarray:
    """Naive-UTC ISO text, ``YYYY-MM-DD HH:MM:SS.ffffff`` (unit us) or ``YYYY-MM-DD`` (unit D),
    None where missing."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    stamps = values.to_numpy(dtype=f"datetime64[{unit}]")
    missing = np.isnat(stamps)
    text = np.datetime_as_string(stamps, unit="D") if unit == "D" else _stamp_text(stamps, missing)
    objects = text.astype(object)
    objects[missing] = None
    return objects


def _stamp_text(stamps: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD HH:MM:SS.ffffff`` of microsecond stamps (any text where missing). Bars
    repeat a few days and times of day, so each distinct one is formatted once and the two
    joined (2× faster than formatting every stamp); stamps that rarely repeat the plain way."""
    micros = np.where(missing, 0, stamps.view("int64"))
    day, time_of_day = np.divmod(micros, MICROS_PER_DAY)
    times, time_at = np.unique(time_of_day, return_inverse=True)
    if not len(stamps) or len(times) > len(stamps) // 4:
        return _space_for_t(np.datetime_as_string(stamps, unit="us"), missing)
    days, day_at = np.unique(day, return_inverse=True)
    day_text = np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    # the time of day as the stamp of 1970-01-01: its text from the 11th character, "T" as " "
    clock = np.datetime_as_string(times.astype("datetime64[us]"), unit="us")
    chars = clock.view("<U1").reshape(len(clock), -1)[:, 10:].copy()
    chars[:, 0] = " "
    clock_text = chars.view(f"<U{chars.shape[1]}").ravel()
    return np.strings.add(day_text[day_at], clock_text[time_at])


def _space_for_t(text: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """ISO ``YYYY-MM-DDTHH:…`` text with a space for the ``T``: set in place as the 11th
    character of the fixed-width strings (3× faster than a string replace); any other layout
    (a year past 9999) the slow way."""
    if not len(text):
        return text
    width = text.dtype.itemsize // np.dtype("<U1").itemsize
    chars = text.view("<U1").reshape(len(text), width) if width > 10 else None
    if chars is None or not (chars[~missing, 10] == "T").all():
        return np.char.replace(text, "T", " ")
    chars[:, 10] = " "
    return text


def read_select(conn: Connection, query: Select) -> pd.DataFrame:
    """The rows of ``query`` as a frame of its selected columns, without a ``Row`` per row.

    DateTime columns come back as ``datetime64[ns, UTC]``; floats as float64 (NULL as NaN);
    other columns as the backend gives them (SQLite) or Arrow parses them (PostgreSQL).
    """
    names = [c.key for c in query.selected_columns]
    types = [c.type for c in query.selected_columns]
    if conn.dialect.name == "postgresql":
        frame = _copy_out(conn, query, names, types)
        for name, sql_type in zip(names, types, strict=True):
            if isinstance(sql_type, DateTime):  # Arrow parsed them: microseconds, UTC
                frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
            elif isinstance(sql_type, Float):
                frame[name] = frame[name].astype("float64")
        return frame
    result = conn.execute(query)
    try:
        columns = fetch_columns(result.cursor, types)
    finally:
        result.close()
    frame = pd.DataFrame(dict(zip(names, columns, strict=True)), copy=False)
    for name, sql_type in zip(names, types, strict=True):
        if isinstance(sql_type, DateTime):
            frame[name] = frame[name].dt.tz_localize("UTC")
    return frame


def fetch_columns(cursor: Any, types: Sequence[TypeEngine]) -> list[np.ndarray]:
    """A DBAPI cursor's remaining rows as one array per column, typed by ``types`` (``_typed``;
    DateTime as naive-UTC ``datetime64[ns]``), without a ``Row`` per row; fetched and
    converted ``BLOCK_ROWS`` rows at a time."""
    blocks = iter(functools.partial(cursor.fetchmany, BLOCK_ROWS), [])
    with _gc_paused():
        parts = [_typed_chunk(rows, types) for rows in blocks]
    return _joined(parts) if parts else _typed_chunk([], types)


def _typed_chunk(rows: Sequence[tuple[Any, ...]], types: Sequence[TypeEngine]) -> list[np.ndarray]:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(types)
    return [_typed(values, sql_type) for values, sql_type in zip(columns, types, strict=True)]


def _joined(parts: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The blocks' columns end to end (numpy joins an integer block with one that kept a NULL
    as Python objects into Python objects, as one block would have been)."""
    return [c[0] if len(c) == 1 else np.concatenate(c) for c in zip(*parts, strict=True)]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while many acyclic tuples are made: each collection of the
    oldest generation walks every object of the process (a large heap with pandas and Dagster
    loaded), which costs more than the fetch itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _typed(values: tuple[Any, ...], sql_type: TypeEngine) -> np.ndarray:
    """One column of fetched values in the dtype its SQL type reads as (numpy converts the
    tuple at once; no intermediate object array for numbers). DateTime columns as naive UTC
    ``datetime64[ns]``."""
    if isinstance(sql_type, DateTime):
        return _utc_stamps(np.array(values, dtype=object))
    if isinstance(sql_type, Float):
        return np.array(values, dtype="float64")  # None -> NaN
    if isinstance(sql_type, Integer):
        try:
            return np.array(values, dtype="int64")
        except TypeError:  # a NULL: keep the Python objects (None stays None)
            pass
    return np.array(values, dtype=object)


def _utc_stamps(text: np.ndarray) -> np.ndarray:
    """SQLite's naive-UTC timestamp text as naive-UTC ``datetime64[ns]``: numpy's ISO parser
    for the text SQLAlchemy stores (``YYYY-MM-DD HH:MM:SS[.ffffff]``, 3× faster than pandas'),
    pandas' for anything else (a UTC offset, which numpy only warns about)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            stamps = text.astype("datetime64[us]")
    except (ValueError, TypeError, UserWarning):
        parsed = pd.to_datetime(text, utc=True, format="ISO8601")
        return pd.DatetimeIndex(parsed).tz_localize(None).to_numpy("datetime64[ns]")
    return stamps.astype("datetime64[ns]")


# Session settings that make COPY's text independent of the server's configuration: ISO dates,
# UTC offsets, and floats in shortest round-trip form (any extra_float_digits > 0, PG 12+).
_COPY_SETTINGS = (
    "SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL TimeZone = 'UTC'; SET LOCAL extra_float_digits = 1"
)


def _copy_out(
    conn: Connection, query: Select, names: Sequence[str], types: Sequence[TypeEngine]
) -> pd.DataFrame:
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(_COPY_SETTINGS)
        # COPY takes no parameters: the driver binds them into the text (its own quoting).
        sql = cursor.mogrify(compiled.string, compiled.params).decode()
        buffer = io.BytesIO()
        cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()
    if not buffer.tell():  # no rows (Arrow refuses an empty file)
        return pd.DataFrame({n: pd.Series([], dtype=object) for n in names})
    buffer.seek(0)
    column_types = {
        n: t for n, t in zip(names, (_arrow_type(t) for t in types), strict=True) if t is not None
    }
    table = arrow_csv.read_csv(
        buffer,
        read_options=arrow_csv.ReadOptions(column_names=list(names)),
        convert_options=arrow_csv.ConvertOptions(
            column_types=column_types,
            true_values=["t"],
            false_values=["f"],
            strings_can_be_null=True,  # unquoted empty field = NULL; quoted "" = empty text
            quoted_strings_can_be_null=False,
        ),
    )
    return table.to_pandas()


def _arrow_type(sql_type: TypeEngine) -> pa.DataType | None:
    if isinstance(sql_type, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(sql_type, Date):
        return pa.date32()
    if isinstance(sql_type, Float):
        return pa.float64()
    if isinstance(sql_type, Boolean):
        return pa.bool_()
    if isinstance(sql_type, Integer):
        return pa.int64()
    if isinstance(sql_type, String | Text):
        return pa.string()
    return None
