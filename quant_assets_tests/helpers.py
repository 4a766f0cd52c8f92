"""Builders shared by tests of several packages: a throw-away PostgreSQL database, a small
populated project database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import psycopg2
from sqlalchemy import Engine

from quant_assets.corporate_actions.adjusted_store import rebuild_adjusted_bars
from quant_assets.daily_tables import build_features, build_labels, write_features, write_labels
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.storage.ephemeral_postgres import EphemeralPostgres

REPO = Path(__file__).resolve().parents[1]
TICKERS = ("AAPL", "MSFT")
# Tiny networks for the tests that train (a second or two per fit on 2 cores): the training
# settings' names and values, for run config and QUANT_TRAIN_* alike.
TINY_NETWORKS = {
    "epochs": 1,
    "lstm_units": 8,
    "lstm_dense": 8,
    "transformer_d_model": 8,
    "transformer_heads": 2,
    "transformer_ff": 16,
    "transformer_blocks": 1,
    "parity_windows": 32,
}
HISTORY = ("2026-09-01", "2026-09-04")  # raw and adjusted bars
FEATURE_DAYS = ("2026-09-03", "2026-09-04")  # features (two sessions of history before)
LABEL_DAYS = ("2026-09-03",)  # labels on the first feature day only


def new_pg_database(server: EphemeralPostgres) -> str:
    """Create an empty database on the test server; return its URL (with password)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=server.port,
        user="postgres",
        password=server.password,
        dbname="postgres",
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return server.url.set(database=name).render_as_string(hide_password=False)


def populate(
    engine: Engine,
    tickers: Sequence[str] = TICKERS,
    history: tuple[str, str] = HISTORY,
    feature_days: Sequence[str] = FEATURE_DAYS,
    label_days: Sequence[str] = LABEL_DAYS,
) -> None:
    """A tiny database: raw bars, adjusted bars, features and (some) labels."""
    market = SyntheticMarket(
        SyntheticConfig(tickers=tuple(tickers), start="2026-08-03", end="2026-09-30")
    )
    days = list(calendar.sessions(*history))
    for ticker in tickers:
        ingest_sessions(market, engine, ticker, days)
    rebuild_adjusted_bars(engine, list(tickers))
    for ticker in tickers:
        write_features(
            build_features(engine, ticker, [pd.Timestamp(d) for d in feature_days]), engine
        )
        if label_days:
            spec = LabelSpec()
            write_labels(
                build_labels(engine, ticker, [pd.Timestamp(d) for d in label_days], spec),
                spec,
                engine,
            )


def fresh_interpreter(code: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python with ``env`` on top of this one's: the definitions read the
    settings once per process, at import."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        check=False,
    )
