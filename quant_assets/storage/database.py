"""The database manager (the plan's ``database_manager.py``): engine, schema, upsert, reads.

One engine per process and database URL, created lazily. Connecting retries with exponential
backoff (a server that starts late is waited for) and ends in ``DatabaseUnavailableError``.
Writes upsert on each table's primary key: rewriting identical rows changes nothing, and a
revised row (e.g. the still-forming newest minute bar) replaces the old one. On PostgreSQL the
rows travel by binary ``COPY`` (``pg_binary``: no value printed or parsed as text) into a
temporary staging table and are merged with one ``INSERT … ON CONFLICT``, or straight into the
table when none of their keys is stored; on SQLite by an ``executemany`` of the same upsert.
Passwords never reach logs, reprs or errors: URLs are rendered with ``hide_password``.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg2.errors
from sqlalchemy import (
    Connection,
    Engine,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    or_,
    text,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import Insert
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from quant_assets.settings import Settings, get_settings
from quant_assets.storage.bar_writes import stamp_bar_writes
from quant_assets.storage.bulk import sqlite_executemany
from quant_assets.storage.pg_binary import binary_copy_buffer
from quant_assets.storage.quarantine import row_key
from quant_assets.storage.schema import TABLES, metadata, price_data

log = logging.getLogger(__name__)

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()
# Serializes schema creation between processes that start at once on the same server.
_SCHEMA_LOCK_ID = 0x5155414E54  # "QUANT"
DEADLOCK_ATTEMPTS = 5


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached after every retry."""


def safe_url(url: URL) -> str:
    """Render a database URL with its password masked."""
    return url.render_as_string(hide_password=True)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process's engine for the configured database, created (and the schema ensured) once."""
    url = (settings or get_settings()).sqlalchemy_url()
    key = url.render_as_string(hide_password=False)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = create_db_engine(settings)
            _ENGINES[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, and processes that fork)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def create_db_engine(settings: Settings | None = None) -> Engine:
    """Create an engine from settings, wait for the server to answer, and ensure the schema.

    Raises ``DatabaseUnavailableError`` (naming the URL without its password) when the server
    does not answer after ``db_connect_attempts`` tries with exponential backoff, and at once,
    with the server's own words, when it answers that the settings are wrong (a refused
    password, an unknown database or role, a bad connection option): waiting cannot fix those.
    """
    settings = settings or get_settings()
    url = settings.sqlalchemy_url()
    engine = _new_engine(url, settings)
    retrying = Retrying(
        stop=stop_after_attempt(settings.db_connect_attempts),
        wait=wait_exponential(multiplier=settings.db_connect_backoff_s, max=10),
        retry=retry_if_exception(_may_come_up),
        before_sleep=lambda state: log.warning(
            "database %s not reachable (attempt %d of %d), retrying",
            safe_url(url),
            state.attempt_number,
            settings.db_connect_attempts,
        ),
        reraise=False,
    )
    try:
        retrying(ensure_schema, engine)
    except OperationalError as err:  # not retried: the server refused the settings
        engine.dispose()
        raise DatabaseUnavailableError(
            f"database {safe_url(url)} refused the connection: {_first_line(err)}; check "
            "QUANT_DATABASE_URL / DB_* (user, password, database name, options)"
        ) from None
    except RetryError as err:
        engine.dispose()
        cause = err.last_attempt.exception()
        raise DatabaseUnavailableError(
            f"database {safe_url(url)} did not answer after {settings.db_connect_attempts} "
            f"attempts ({type(cause).__name__}); is the server running and reachable?"
        ) from None
    log.info("connected to %s", safe_url(url))
    return engine


# What a server that is up says about wrong settings (libpq / PostgreSQL messages).
_SETTINGS_ERRORS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "no pg_hba.conf entry",
    "invalid sslmode",
    "invalid connection option",
    "invalid dsn",
    "sslmode value",
    "permission denied",
)


def _may_come_up(err: BaseException) -> bool:
    """An OperationalError that waiting may cure (refused, timed out) — not wrong settings."""
    if not isinstance(err, OperationalError):
        return False
    text = str(err.orig if err.orig is not None else err).lower()
    return not any(words in text for words in _SETTINGS_ERRORS)


def _first_line(err: OperationalError) -> str:
    lines = str(err.orig if err.orig is not None else err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


def _new_engine(url: URL, settings: Settings) -> Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": 5, "application_name": "quant_assets"},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the poller write while Dagster runs read; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def ensure_schema(engine: Engine) -> None:
    """Create missing tables (and bring older ones up to date); on PostgreSQL make price_data a
    hypertable when TimescaleDB exists."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
        _migrate_quarantine(conn)
        metadata.create_all(conn)
        if engine.dialect.name == "postgresql":
            _ensure_hypertable(conn)


def _migrate_quarantine(conn: Connection) -> None:
    """The first ``bar_quarantine`` was keyed on (ticker, ts, reason), which cannot hold a row
    without a ticker or time, nor two conflicting copies: move its rows to the new layout."""
    inspector = inspect(conn)
    if not inspector.has_table("bar_quarantine"):
        return
    if "row_key" in {c["name"] for c in inspector.get_columns("bar_quarantine")}:
        return
    old = pd.read_sql(text("SELECT ticker, ts, reason, payload, seen_at FROM bar_quarantine"), conn)
    conn.execute(text("DROP TABLE bar_quarantine"))
    table = get_table("bar_quarantine")
    table.create(conn)
    if old.empty:
        return
    ts = to_utc(old["ts"])
    old["row_key"] = [
        row_key(t, None if pd.isna(s) else s.isoformat(), r, p)
        for t, s, r, p in zip(old["ticker"], ts, old["reason"], old["payload"], strict=True)
    ]
    old["ts"], old["seen_at"] = ts, to_utc(old["seen_at"])
    upsert_frame(conn, "bar_quarantine", old.drop_duplicates("row_key"), update=False)
    log.info("bar_quarantine: %d rows moved to the layout keyed on the whole row", len(old))


def _ensure_hypertable(conn: Connection) -> None:
    available = conn.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    if available is None:
        log.info("timescaledb not available: price_data is a plain table keyed on (ticker, ts)")
        return
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
    conn.execute(
        text(
            "SELECT create_hypertable('price_data', 'ts', if_not_exists => TRUE, "
            "migrate_data => TRUE)"
        )
    )
    log.info("price_data is a TimescaleDB hypertable")


def refresh_statistics(engine: Engine, table_name: str) -> None:
    """On PostgreSQL, ``ANALYZE`` the table: after a bulk build, before queries whose plan
    depends on its size. Autovacuum analyzes only after its nap, and until then the planner may
    take a table just filled for empty (a join planned as a nested loop over sequential scans
    ran for minutes at 350k rows). ANALYZE samples a bounded number of rows; SQLite's planner
    needs nothing."""
    if engine.dialect.name != "postgresql":
        return
    table = get_table(table_name)
    with engine.begin() as conn:
        conn.execute(text(f"ANALYZE {table.name}"))


def get_table(table_name: str) -> Table:
    """The schema's table of that name; a clear error for an unknown one."""
    try:
        return TABLES[table_name]
    except KeyError:
        raise ValueError(f"unknown table {table_name!r}; known: {sorted(TABLES)}") from None


def write_to_db(df: pd.DataFrame, table_name: str, engine: Engine | None = None) -> int:
    """Upsert ``df`` into ``table_name`` on its primary key; return rows inserted or changed.

    Rows identical to the stored ones are not rewritten (so the count is 0 for a repeat).
    The whole frame is written in one transaction; a deadlock with a concurrent writer (which
    PostgreSQL resolves by aborting one of them) is retried.
    """
    return _write(df, table_name, engine or get_engine(), update=True)


def insert_new(df: pd.DataFrame, table_name: str, engine: Engine | None = None) -> int:
    """Insert the rows of ``df`` whose primary key is not stored yet (stored rows stay as they
    are); return the rows inserted. One transaction, deadlocks retried."""
    return _write(df, table_name, engine or get_engine(), update=False)


def _write(df: pd.DataFrame, table_name: str, engine: Engine, update: bool) -> int:
    retrying = Retrying(
        stop=stop_after_attempt(DEADLOCK_ATTEMPTS),
        wait=wait_exponential(multiplier=0.05, max=2),
        retry=retry_if_exception(_is_deadlock),
        reraise=True,
    )
    for attempt in retrying:
        with attempt, engine.begin() as conn:
            return upsert_frame(conn, table_name, df, update=update)
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


def is_outage(err: BaseException) -> bool:
    """Whether an error means the database is unavailable (retry later), not that the data or
    the statement is wrong (retrying the same write would fail the same way)."""
    if isinstance(err, DatabaseUnavailableError | OSError):
        return True
    return isinstance(err, OperationalError | InterfaceError) or bool(
        getattr(err, "connection_invalidated", False)
    )


def _is_deadlock(err: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction was aborted and may simply rerun."""
    code = getattr(getattr(err, "orig", None), "pgcode", None)
    return isinstance(err, DBAPIError) and code in ("40P01", "40001")


def upsert_frame(
    conn: Connection, table_name: str, df: pd.DataFrame, *, update: bool = True
) -> int:
    """``write_to_db`` inside a transaction the caller holds (for multi-step atomic writes).

    ``update=False``: rows whose key is stored are left alone (``insert_new``). Rows are sent
    in key order, so concurrent writers take their row locks in the same order.
    """
    table = get_table(table_name)
    columns = _checked_columns(df, table)
    if df.empty:
        return 0
    keys = [c.name for c in table.primary_key.columns]
    # Rows in strict key order (as the builders make them) are unique and sorted already; a
    # generated key has nothing to compare.
    if set(keys) <= set(columns) and not _strictly_increasing(df, keys):
        if df.duplicated(subset=keys).any():
            raise ValueError(f"frame for {table_name} has duplicate primary keys")
        df = df.sort_values(keys, kind="stable")
    if conn.dialect.name == "postgresql":
        written = _upsert_postgres_copy(conn, table, df[columns], update)
    else:
        written = _upsert_sqlite(conn, table, df[columns], update)
    _stamp(conn, table, df)
    return written


def _strictly_increasing(df: pd.DataFrame, keys: Sequence[str]) -> bool:
    """Whether the rows' key tuples strictly increase (so they are unique and sorted): one
    vectorized pass instead of hashing every key and sorting. False when a key cannot be
    compared (a null, mixed types): the caller then checks and sorts the general way."""
    if len(df) < 2:
        return True
    greater = np.zeros(len(df) - 1, dtype=bool)
    equal = np.ones(len(df) - 1, dtype=bool)
    try:
        for key in keys:
            column = df[key]
            # A tz-aware column as UTC datetime64 (its plain to_numpy is one object per row).
            as_dtype = "datetime64[ns]" if isinstance(column.dtype, pd.DatetimeTZDtype) else None
            values = column.to_numpy(dtype=as_dtype)
            if pd.isna(values).any():
                return False
            previous, following = values[:-1], values[1:]
            greater |= equal & (following > previous)
            equal &= following == previous
    except TypeError:
        return False
    return bool(greater.all())


def insert_frame(conn: Connection, table_name: str, df: pd.DataFrame) -> int:
    """Plain INSERT of rows whose keys are known to be absent (e.g. deleted in this transaction).

    Faster than an upsert: COPY straight into the table on PostgreSQL, executemany on SQLite.
    """
    table = get_table(table_name)
    columns = _checked_columns(df, table)
    if df.empty:
        return 0
    if conn.dialect.name == "postgresql":
        quote = conn.dialect.identifier_preparer.quote
        col_list = ", ".join(quote(c) for c in columns)
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.copy_expert(
                f"COPY {quote(table.name)} ({col_list}) FROM STDIN WITH (FORMAT binary)",
                binary_copy_buffer(df[columns], table),
            )
            written = len(df)
        finally:
            cursor.close()
    else:
        written = sqlite_executemany(conn, _plain_insert(table.name), df[columns])
    _stamp(conn, table, df)
    return written


def _stamp(conn: Connection, table: Table, df: pd.DataFrame) -> None:
    """Raw bars carry their write stamps (``bar_writes``) in the write's own transaction, so
    no writer of ``price_data`` can leave a reader's kept bars silently stale."""
    if table is price_data:
        stamp_bar_writes(conn, df)


@functools.cache
def _plain_insert(table_name: str) -> Insert:
    return get_table(table_name).insert()


def _checked_columns(df: pd.DataFrame, table: Table) -> list[str]:
    unknown = sorted(set(df.columns) - {c.name for c in table.columns})
    if unknown:
        raise ValueError(f"columns {unknown} are not in table {table.name}")
    missing_keys = [c.name for c in table.primary_key.columns if c.name not in df.columns]
    if missing_keys and not all(c.autoincrement is True for c in table.primary_key.columns):
        raise ValueError(f"frame for {table.name} lacks key columns {missing_keys}")
    for column in table.columns:
        length = getattr(column.type, "length", None)
        if length and column.name in df.columns:
            # Distinct values only: a key column repeats a few values over many rows.
            too_long = [v for v in pd.unique(df[column.name].dropna()) if len(str(v)) > length]
            if too_long:
                raise ValueError(
                    f"{table.name}.{column.name} holds at most {length} characters: {too_long[0]!r}"
                )
    return [c.name for c in table.columns if c.name in df.columns]


def _update_columns(table: Table, columns: Sequence[str]) -> list[str]:
    keys = {c.name for c in table.primary_key.columns}
    return [c for c in columns if c not in keys]


def _upsert_sqlite(conn: Connection, table: Table, df: pd.DataFrame, update: bool) -> int:
    stmt = _sqlite_upsert(table.name, tuple(df.columns), update)
    return sqlite_executemany(conn, stmt, df)


@functools.cache
def _sqlite_upsert(table_name: str, columns: tuple[str, ...], update: bool) -> Insert:
    """One statement object per table, columns and mode (so its compiled form is reused)."""
    table = get_table(table_name)
    stmt = sqlite_insert(table)
    updates = _update_columns(table, columns) if update else []
    keys = [c.name for c in table.primary_key.columns]
    if updates:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={c: stmt.excluded[c] for c in updates},
            where=or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in updates)),
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt


def _upsert_postgres_copy(conn: Connection, table: Table, df: pd.DataFrame, update: bool) -> int:
    quote = conn.dialect.identifier_preparer.quote
    cols = list(df.columns)
    col_list = ", ".join(quote(c) for c in cols)
    stage = quote(f"_stage_{table.name}")
    target = quote(table.name)
    keys = [c.name for c in table.primary_key.columns]
    key_list = ", ".join(quote(k) for k in keys)
    updates = _update_columns(table, cols) if update else []
    if updates:
        set_clause = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
        changed = " OR ".join(
            f"{target}.{quote(c)} IS DISTINCT FROM EXCLUDED.{quote(c)}" for c in updates
        )
        conflict = f"DO UPDATE SET {set_clause} WHERE {changed}"
    else:
        conflict = "DO NOTHING"
    buffer = binary_copy_buffer(df, table)
    cursor = conn.connection.driver_connection.cursor()
    try:
        if _copied_straight_in(cursor, table, df, quote, col_list, buffer):
            return len(df)
        cursor.execute(
            f"CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        cursor.copy_expert(f"COPY {stage} ({col_list}) FROM STDIN WITH (FORMAT binary)", buffer)
        # ORDER BY the key: concurrent writers then lock rows in one order (no deadlock cycle).
        cursor.execute(
            f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM {stage} "
            f"ORDER BY {key_list} ON CONFLICT ({key_list}) {conflict}"
        )
        count = cursor.rowcount
        cursor.execute(f"DROP TABLE {stage}")
        return count
    finally:
        cursor.close()


def _copied_straight_in(
    cursor: Any, table: Table, df: pd.DataFrame, quote: Any, col_list: str, buffer: io.BytesIO
) -> bool:
    """When no stored row has a key of ``df``, COPY it straight into the table (what the upsert
    would insert, without the staging table) and say so.

    The check looks at the keys' bounding box (text keys by value); a row a concurrent writer
    commits meanwhile makes the COPY fail on the key, which rolls back to a savepoint and leaves
    the upsert to do it. Rows go in key order, so such writers never wait on each other in a cycle.
    """
    keys = list(table.primary_key.columns)
    if any(k.name not in df.columns for k in keys):  # a generated key: nothing to look up
        return False
    conditions, params = [], []
    for column in keys:
        values = df[column.name]
        if isinstance(column.type, String | Text):
            conditions.append(f"{quote(column.name)} = ANY(%s)")
            params.append([str(v) for v in pd.unique(values)])
        else:
            conditions.append(f"{quote(column.name)} BETWEEN %s AND %s")
            bounds = (values.min(), values.max())
            params.extend(v.item() if isinstance(v, np.generic) else v for v in bounds)
    cursor.execute(
        f"SELECT 1 FROM {quote(table.name)} WHERE {' AND '.join(conditions)} LIMIT 1", params
    )
    if cursor.fetchone() is not None:
        return False
    cursor.execute("SAVEPOINT copy_straight_in")
    try:
        cursor.copy_expert(
            f"COPY {quote(table.name)} ({col_list}) FROM STDIN WITH (FORMAT binary)", buffer
        )
    except psycopg2.errors.UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT copy_straight_in")
        buffer.seek(0)
        return False
    cursor.execute("RELEASE SAVEPOINT copy_straight_in")
    return True


def read_from_db(
    query: str | Executable,
    engine: Engine | None = None,
    params: Mapping[str, Any] | None = None,
    utc_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Run a query with bound parameters (``:name`` placeholders) and return a DataFrame.

    Values are never formatted into the SQL text. ``utc_columns`` are parsed as tz-aware UTC
    timestamps whatever the backend returns (SQLite has no time zones).
    """
    engine = engine or get_engine()
    statement = text(query) if isinstance(query, str) else query
    with engine.connect() as conn:
        frame = pd.read_sql(statement, conn, params=dict(params or {}))
    for col in utc_columns:
        frame[col] = to_utc(frame[col])
    return frame


def to_utc(values: pd.Series) -> pd.Series:
    """Parse stored timestamps (aware on PostgreSQL, naive-UTC on SQLite) as datetime64[ns, UTC]."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    return parsed.astype("datetime64[ns, UTC]")


def to_db_timestamp(ts: pd.Timestamp, engine: Engine) -> pd.Timestamp:
    """A UTC timestamp in the form the backend compares correctly (naive UTC on SQLite)."""
    ts = pd.Timestamp(ts)
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts} has no time zone; pass UTC")
    ts = ts.tz_convert("UTC")
    return ts.tz_localize(None) if engine.dialect.name == "sqlite" else ts
