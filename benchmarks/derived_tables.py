"""The derived-table stages (adjusted_bars, features, labels) against the bare database, in one
process, on SQLite and on a throw-away PostgreSQL server.

Synthetic 1-minute bars (default 20 tickers × 10 sessions; ``--sessions 45`` is the demo window)
are stored as raw bars, with the market's splits and dividends in the ledger (as
``corporate_actions`` stores them), then each stage runs as its own code does, per ticker:
adjusted bars by ``rebuild_adjusted_bars`` (first build: one transaction per ticker), features by
``build_features`` + ``write_features``, labels by ``build_labels`` + ``write_labels``. The
storage calls inside each stage are timed where the stage makes them (``read_bars`` /
``read_adjusted_bars`` for the read; ``insert_frame`` / ``write_features`` / ``write_labels``
for the write) and the frames they moved are kept; the reads are then made again by the stage's
read function, back to back, in the database state the baseline reads in, and that time is
compared (a read inside a stage also pays for the caches the stage's compute and writes evicted,
which the baseline's back-to-back reads never do; the time in the stage is printed beside it).
The baseline moves the same frames with the bare driver: on SQLite ``sqlite3`` ``executemany``
of ready-made tuples with the same SQL (plain INSERT for adjusted bars, the upsert for features
and labels) in one transaction per ticker into an empty copy of the schema, and a raw cursor's
``fetchall`` of the same SELECT; on PostgreSQL ``COPY … FROM STDIN`` of a ready-made CSV and
``COPY (SELECT …) TO STDOUT``. The baseline does no conversion at all (tuples and CSV are built
outside its timer); the stages turn frames into rows and rows into typed frames inside theirs.

On each backend it also times an in-process Dagster run of the same stages over the same days
(the derived tables are partitioned by day; the run builds every ticker; ``--no-dagster`` skips
it) against the direct calls of the stage bodies made just before each run, with the instance
on SQLite files and on PostgreSQL, each both on Dagster's own storage (a connection per event,
for reference) and on ours (``PooledSqliteStorage``, the embedded default;
``PooledPostgresStorage``, the production profile's).

Goals: each stage's write and read ≤ 1.5× the baseline on each backend; the Dagster run ≤ 1.3×
the direct calls, with the instance on SQLite files (the embedded default) and on the
production profile's PostgreSQL storage. Best of ``--repeats`` (tables emptied before each).
Prints per stage the seconds, rows/s and ratios, then ``goals: met`` or ``goals: MISSED`` (exit
status 1).
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as arrow_csv
from pydantic import SecretStr
from sqlalchemy import Engine, text

from quant_assets import daily_tables
from quant_assets.corporate_actions import adjusted_store
from quant_assets.corporate_actions.ledger import fetch_corporate_actions
from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.settings import DEFAULT_TICKERS, Settings
from quant_assets.storage.bars import write_bars
from quant_assets.storage.database import create_db_engine
from quant_assets.storage.ephemeral_postgres import EphemeralPostgres
from quant_assets.storage.schema import TABLES

GOAL = 1.5
DAGSTER_GOAL = 1.3
INSTANCE_STORAGE = "quant_assets.defs.instance_storage"
FIRST_SESSION = "2026-03-02"
STAGES = ("adjusted_bars", "features", "labels")
READ_FUNCTIONS = {
    "price_data": adjusted_store.read_bars,
    "adjusted_bars": daily_tables.read_adjusted_bars,
}
READ_COLUMNS = {  # what each stage's read selects (bars.read_bars / read_adjusted_bars)
    "price_data": "ticker, ts, open, high, low, close, volume",
    "adjusted_bars": "ticker, ts, open, high, low, close, volume",
}


@dataclass
class Moved:
    """What one stage's storage calls moved and how long they took (summed over tickers)."""

    read_s: float = 0.0
    write_s: float = 0.0
    total_s: float = 0.0
    reads: list[tuple[str, str, pd.Timestamp, pd.Timestamp]] = field(default_factory=list)
    writes: list[pd.DataFrame] = field(default_factory=list)


def synthetic_bars(
    tickers: tuple[str, ...], sessions: int
) -> tuple[pd.DataFrame, list, SyntheticMarket]:
    """The synthetic market's bars of the first ``sessions`` sessions, those days and the
    market (its splits and dividends go into the ledger, as ``corporate_actions`` puts them)."""
    days = list(calendar.sessions(FIRST_SESSION, "2026-12-31")[:sessions])
    market = SyntheticMarket(
        SyntheticConfig(tickers=tickers, start=str(days[0].date()), end=str(days[-1].date()))
    )
    start, end = calendar.span_of_days(days[0], days[-1])
    bars = pd.concat([market.get_bars(t, start, end) for t in tickers], ignore_index=True)
    return bars, days, market


@contextmanager
def timed(module: Any, name: str, moved: Moved, kind: str, table: str = "") -> Iterator[None]:
    """Time (and record) every call of ``module.name`` made while inside."""
    original: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        out = original(*args, **kwargs)
        elapsed = time.perf_counter() - began
        if kind == "read":
            moved.read_s += elapsed
            _engine, tickers, start, end = args[:4]
            moved.reads.append((table, tickers[0], start, end))
        else:
            moved.write_s += elapsed
            moved.writes.append(args[2] if name == "insert_frame" else args[0])
        return out

    with mock.patch.object(module, name, wrapper):
        yield


@contextmanager
def captured(module: Any, name: str, moved: Moved) -> Iterator[None]:
    """Keep the frames passed to ``module.name`` (the rows a stage stores), untimed."""
    original = getattr(module, name)

    def wrapper(df: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        moved.writes.append(df)
        return original(df, *args, **kwargs)

    with mock.patch.object(module, name, wrapper):
        yield


def run_stages(engine: Engine, tickers: tuple[str, ...], days: list) -> dict[str, Moved]:
    """The three stages as their code runs them; the storage calls timed inside."""
    out = {s: Moved() for s in STAGES}
    moved = out["adjusted_bars"]
    began = time.perf_counter()
    with (
        timed(adjusted_store, "read_bars", moved, "read", "price_data"),
        timed(adjusted_store, "insert_frame", moved, "write"),
    ):
        adjusted_store.rebuild_adjusted_bars(engine, list(tickers))
    moved.total_s = time.perf_counter() - began

    spec = LabelSpec()
    for stage in ("features", "labels"):
        moved = out[stage]
        began = time.perf_counter()
        with (
            timed(daily_tables, "read_adjusted_bars", moved, "read", "adjusted_bars"),
            captured(daily_tables, "write_to_db", moved),
        ):
            for ticker in tickers:
                if stage == "features":
                    frame = daily_tables.build_features(engine, ticker, days)
                    t0 = time.perf_counter()
                    daily_tables.write_features(frame, engine)
                else:
                    frame = daily_tables.build_labels(engine, ticker, days, spec)
                    t0 = time.perf_counter()
                    daily_tables.write_labels(frame, spec, engine)
                moved.write_s += time.perf_counter() - t0
        moved.total_s = time.perf_counter() - began
    return out


def empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in (*STAGES, "adjusted_bars_state"):
            conn.execute(text(f"DELETE FROM {table}"))


# --- the bare-driver baseline -------------------------------------------------------------------
def upsert_sql(table_name: str, columns: list[str], mark: str) -> str:
    """The storage layer's upsert (plain INSERT for adjusted bars) written out by hand."""
    table = TABLES[table_name]
    keys = [c.name for c in table.primary_key.columns]
    sql = (
        f"INSERT INTO {table_name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    if table_name == "adjusted_bars":
        return sql
    updates = [c for c in columns if c not in keys]
    distinct = "IS NOT" if mark == "?" else "IS DISTINCT FROM"
    return (
        f"{sql} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in updates)
        + " WHERE "
        + " OR ".join(f"{table_name}.{c} {distinct} excluded.{c}" for c in updates)
    )


def stored_form(df: pd.DataFrame, table_name: str) -> pd.DataFrame:
    """The frame as the database receives it (UTC text, dates, ints for bools, None for NaN)."""
    out = df.copy()
    table = TABLES[table_name]
    for col in out.columns:
        kind = type(table.c[col].type).__name__
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):
            out[col] = out[col].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        elif kind == "Date":
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%d")
        elif kind == "Boolean":
            out[col] = out[col].astype("Int64")
    return out.astype(object).where(out.notna(), None)


def sqlite_baseline(db: Path, base_db: Path, moved: Moved, table_name: str) -> tuple[float, float]:
    """(write s, read s) of the bare sqlite3 driver moving the stage's frames."""
    base = sqlite3.connect(base_db, isolation_level=None)
    base.execute("PRAGMA journal_mode=WAL")
    base.execute("PRAGMA synchronous=NORMAL")
    base.execute(f"DELETE FROM {table_name}")
    batches = []
    for df in moved.writes:
        rows = stored_form(df, table_name)
        batches.append((upsert_sql(table_name, list(rows.columns), "?"), rows.to_numpy().tolist()))
    began = time.perf_counter()
    for sql, rows in batches:
        base.execute("BEGIN")
        base.executemany(sql, rows)
        base.execute("COMMIT")
    write_s = time.perf_counter() - began
    base.close()
    conn = sqlite3.connect(db)
    began = time.perf_counter()
    for table, ticker, start, end in moved.reads:
        conn.execute(
            f"SELECT {READ_COLUMNS[table]} FROM {table} WHERE ts >= ? AND ts < ? AND ticker IN (?) "
            "ORDER BY ticker, ts",
            (_naive(start), _naive(end), ticker),
        ).fetchall()
    read_s = time.perf_counter() - began
    conn.close()
    return write_s, read_s


def _naive(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f")


def pg_baseline(
    engine: Engine, base_engine: Engine, moved: Moved, table_name: str
) -> tuple[float, float]:
    """(write s, read s) of bare COPY moving the stage's frames."""
    buffers = []
    for df in moved.writes:
        out = df.copy()
        for col in out.columns:
            if isinstance(out[col].dtype, pd.DatetimeTZDtype):
                out[col] = out[col].dt.tz_convert("UTC")
            elif type(TABLES[table_name].c[col].type).__name__ == "Date":
                out[col] = pd.to_datetime(out[col]).dt.date
        buf = io.BytesIO()
        arrow_csv.write_csv(
            pa.Table.from_pandas(out, preserve_index=False).combine_chunks(),
            buf,
            arrow_csv.WriteOptions(include_header=False),
        )
        buffers.append((list(out.columns), buf))
    raw = base_engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"DELETE FROM {table_name}")
        raw.commit()
        began = time.perf_counter()
        for columns, buf in buffers:
            buf.seek(0)
            cursor.copy_expert(
                f"COPY {table_name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '')",
                buf,
            )
            raw.commit()
        write_s = time.perf_counter() - began
    finally:
        raw.close()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        began = time.perf_counter()
        for table, ticker, start, end in moved.reads:
            query = cursor.mogrify(
                f"SELECT {READ_COLUMNS[table]} FROM {table} WHERE ts >= %s AND ts < %s "
                "AND ticker IN (%s) ORDER BY ticker, ts",
                (start.to_pydatetime(), end.to_pydatetime(), ticker),
            ).decode()
            cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)", io.BytesIO())
        read_s = time.perf_counter() - began
        raw.rollback()
    finally:
        raw.close()
    return write_s, read_s


# --- one backend --------------------------------------------------------------------------------
def bench_backend(
    url: str, base_url: str, bars: pd.DataFrame, market: SyntheticMarket, days: list, repeats: int
) -> dict[str, dict[str, float]]:
    """Best-of-``repeats`` seconds per stage: ours and the baseline, read and write."""
    engine = create_db_engine(Settings(database_url=SecretStr(url), _env_file=None))
    base_engine = create_db_engine(Settings(database_url=SecretStr(base_url), _env_file=None))
    write_bars(bars, engine)
    tickers = tuple(sorted(bars["ticker"].unique()))
    # Without the ledger the adjusted bars would skip the adjustment and flag every split.
    fetch_corporate_actions(tickers, market, engine)
    best: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(lambda: float("inf")))
    for _ in range(repeats):
        empty_tables(engine)
        moved = run_stages(engine, tickers, days)
        for stage, m in moved.items():
            if engine.dialect.name == "sqlite":
                paths = (Path(u.removeprefix("sqlite:///")) for u in (url, base_url))
                write_b, read_b = sqlite_baseline(*paths, m, stage)
            else:
                write_b, read_b = pg_baseline(engine, base_engine, m, stage)
            figures = {
                "total": m.total_s,
                "read_in_stage": m.read_s,
                "read": replayed_read_s(engine, m),
                "write": m.write_s,
                "read_base": read_b,
                "write_base": write_b,
                "rows": float(sum(len(w) for w in m.writes)),
                "reads": float(len(m.reads)),
            }
            for key, value in figures.items():
                best[stage][key] = min(best[stage][key], value)
    engine.dispose()
    base_engine.dispose()
    return best


def replayed_read_s(engine: Engine, moved: Moved) -> float:
    """Seconds of the stage's own read function making the stage's reads again, back to back,
    in the database state the baseline reads in (right after it)."""
    began = time.perf_counter()
    for table, ticker, start, end in moved.reads:
        READ_FUNCTIONS[table](engine, [ticker], start, end)
    return time.perf_counter() - began


def dagster_run_s(
    url: str,
    home: Path,
    tickers: tuple[str, ...],
    days: list,
    storage: Callable[[Path], dict[str, Any]] | None = None,
) -> float:
    """Seconds of one in-process ``daily_tables``-style run (adjusted bars, features, labels)
    over the same days, with a throw-away instance (SQLite files, or the ``storage`` section of
    a dagster.yaml) — events included."""
    import dagster as dg

    from quant_assets.defs.corporate_actions import adjusted_bars
    from quant_assets.defs.features import features_and_labels
    from quant_assets.defs.partitions import day_range_tags
    from quant_assets.defs.resources import DatabaseResource, MarketSourceResource

    os.environ["QUANT_DATABASE_URL"] = url
    os.environ["QUANT_HOME"] = str(home)
    overrides = {"storage": storage(home)} if storage else None
    with dg.instance_for_test(temp_dir=str(home), overrides=overrides) as instance:
        began = time.perf_counter()
        result = dg.materialize(
            [adjusted_bars, features_and_labels],
            instance=instance,
            resources={
                "database": DatabaseResource(),
                "market": MarketSourceResource(tickers=list(tickers)),
            },
            tags=day_range_tags(days[0], days[-1]),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=True,
        )
        elapsed = time.perf_counter() - began
    assert result.success
    return elapsed


def custom_storage(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The ``storage:`` section naming one of our instance storages, as the dagster.yaml files."""
    return {"custom": {"module": INSTANCE_STORAGE, "class": name, "config": config}}


def compare_dagster_run(
    instance_name: str,
    url: str,
    storage: Callable[[Path], dict[str, Any]] | None,
    tickers: tuple[str, ...],
    days: list,
    repeats: int,
    env: dict[str, str] | None = None,
) -> bool:
    """Best of ``repeats`` Dagster runs of the stages against the best of as many direct
    calls of the stage bodies, each made just before its run (tables emptied before each, so
    that both meet the machine in the same state); print the ratio and return whether it
    meets the goal."""
    settings = Settings(database_url=SecretStr(url), _env_file=None)
    runs, directs = [], []
    for _ in range(repeats):
        engine = create_db_engine(settings)
        empty_tables(engine)
        directs.append(sum(m.total_s for m in run_stages(engine, tickers, days).values()))
        empty_tables(engine)
        engine.dispose()
        with (
            tempfile.TemporaryDirectory(prefix="bench-dagster-") as home,
            mock.patch.dict(os.environ, env or {}),
        ):
            runs.append(dagster_run_s(url, Path(home), tickers, days, storage))
    run_s, direct = min(runs), min(directs)
    print(
        f"Dagster run of the three stages, instance on {instance_name} (in process, "
        f"{len(days)} day partitions each, {len(tickers)} tickers): {run_s:.1f} s "
        f"vs {direct:.1f} s direct = {run_s / direct:.2f}x (goal ≤ {DAGSTER_GOAL}x)"
    )
    return run_s / direct <= DAGSTER_GOAL


def report(name: str, best: dict[str, dict[str, float]]) -> bool:
    ok = True
    print(f"\n{name}:")
    print(
        f"{'stage':14} {'rows':>9} {'total s':>8} {'in stage':>8} {'read s':>7} {'base':>6} "
        f"{'ratio':>6} {'write s':>8} {'base':>6} {'ratio':>6} {'rows/s':>9} {'base rows/s':>11}"
    )
    for stage in STAGES:
        f = best[stage]
        read_ratio, write_ratio = f["read"] / f["read_base"], f["write"] / f["write_base"]
        ok &= read_ratio <= GOAL and write_ratio <= GOAL
        print(
            f"{stage:14} {f['rows']:9,.0f} {f['total']:8.2f} {f['read_in_stage']:8.2f} "
            f"{f['read']:7.2f} "
            f"{f['read_base']:6.2f} {read_ratio:5.2f}x {f['write']:8.2f} {f['write_base']:6.2f} "
            f"{write_ratio:5.2f}x {f['rows'] / f['write']:9,.0f} "
            f"{f['rows'] / f['write_base']:11,.0f}"
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=10)
    # Three: on a 2-core host the same run's time spreads by ±10% from one try to the next.
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--no-dagster", dest="dagster", action="store_false", help="skip the Dagster run"
    )
    args = parser.parse_args()
    tickers = (
        tuple(DEFAULT_TICKERS[: args.tickers])
        if args.tickers <= len(DEFAULT_TICKERS)
        else (tuple(f"T{k:02d}" for k in range(args.tickers)))
    )
    bars, days, market = synthetic_bars(tickers, args.sessions)
    print(
        f"bars: {len(bars):,} ({len(tickers)} tickers × {len(days)} sessions, SyntheticMarket); "
        f"best of {args.repeats}; goal: read and write ≤ {GOAL}× the bare driver"
    )
    ok = True
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-derived-")))
        if args.backend in ("sqlite", "both"):
            db = tmp / "quant.db"
            best = bench_backend(
                f"sqlite:///{db}", f"sqlite:///{tmp / 'base.db'}", bars, market, days, args.repeats
            )
            ok &= report("SQLite (executemany / cursor baseline)", best)
            if args.dagster:
                compare_dagster_run(
                    "SQLite files (Dagster's own storage: a connection per event; for reference)",
                    f"sqlite:///{db}",
                    None,
                    tickers,
                    days,
                    args.repeats,
                )
                ok &= compare_dagster_run(
                    "SQLite files (PooledSqliteStorage, the embedded default)",
                    f"sqlite:///{db}",
                    lambda home: custom_storage("PooledSqliteStorage", {"base_dir": str(home)}),
                    tickers,
                    days,
                    args.repeats,
                )
        if args.backend in ("postgresql", "both"):
            server = stack.enter_context(EphemeralPostgres(database="bench"))
            url = server.url.render_as_string(hide_password=False)
            with create_db_engine(
                Settings(database_url=SecretStr(url), _env_file=None)
            ).connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text("CREATE DATABASE bench_base")
                )
            base_url = server.url.set(database="bench_base").render_as_string(hide_password=False)
            best = bench_backend(url, base_url, bars, market, days, args.repeats)
            ok &= report("PostgreSQL (COPY baseline)", best)
            if args.dagster:
                with create_db_engine(
                    Settings(database_url=SecretStr(url), _env_file=None)
                ).connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                        text("CREATE DATABASE bench_dagster")
                    )
                dagster_url = server.url.set(database="bench_dagster")
                pg = {"postgres_url": dagster_url.render_as_string(hide_password=False)}
                batched = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}
                compare_dagster_run(
                    "PostgreSQL (plain dagster-postgres: a connection per event; for reference)",
                    url,
                    lambda _home: {"postgres": pg},
                    tickers,
                    days,
                    args.repeats,
                    batched,
                )
                ok &= compare_dagster_run(
                    "PostgreSQL (PooledPostgresStorage with DAGSTER_EVENT_BATCH_SIZE=1000, as "
                    "the production stack runs it)",
                    url,
                    lambda _home: custom_storage("PooledPostgresStorage", pg),
                    tickers,
                    days,
                    args.repeats,
                    batched,
                )
    print(f"\ngoals: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
