"""Bulk upsert into PostgreSQL vs ``DataFrame.to_sql`` (default method), in one process.

20 tickers × 10 sessions of synthetic 1-minute bars. Uses QUANT_DATABASE_URL when it names a
PostgreSQL database, otherwise starts a throw-away server as the tests do. Prints rows/s of both
and the ratio (goal ≥ 4×), then re-runs the upsert and checks the row count is unchanged.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack

import pandas as pd
from pydantic import SecretStr
from sqlalchemy import text

from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.settings import DEFAULT_TICKERS, Settings
from quant_assets.storage.bars import write_bars
from quant_assets.storage.database import create_db_engine
from quant_assets.storage.ephemeral_postgres import EphemeralPostgres

FIRST, LAST = "2026-03-02", "2026-03-13"  # 10 sessions


def synthetic_bars() -> pd.DataFrame:
    market = SyntheticMarket(SyntheticConfig(tickers=DEFAULT_TICKERS, end="2026-03-31"))
    start = calendar.session_bounds(FIRST)[0]
    end = calendar.session_bounds(LAST)[1]
    return pd.concat([market.get_bars(t, start, end) for t in DEFAULT_TICKERS], ignore_index=True)


def main() -> int:
    with ExitStack() as stack:
        url = os.environ.get("QUANT_DATABASE_URL", "")
        if not url.startswith("postgresql"):
            server = stack.enter_context(EphemeralPostgres(database="bench"))
            url = server.url.render_as_string(hide_password=False)
        engine = create_db_engine(Settings(database_url=SecretStr(url), _env_file=None))
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE price_data"))
            conn.execute(text("DROP TABLE IF EXISTS bench_to_sql"))
        bars = synthetic_bars()
        n = len(bars)

        began = time.perf_counter()
        bars.to_sql("bench_to_sql", engine, if_exists="append", index=False)
        to_sql_s = time.perf_counter() - began

        began = time.perf_counter()
        written = write_bars(bars, engine)
        upsert_s = time.perf_counter() - began

        rewritten = write_bars(bars, engine)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT COUNT(*) FROM price_data")).scalar_one()
            conn.execute(text("DROP TABLE bench_to_sql"))
            conn.commit()
        engine.dispose()

    ratio = to_sql_s / upsert_s
    print(f"rows: {n} (20 tickers × 10 sessions)")
    print(f"DataFrame.to_sql (default): {to_sql_s:6.2f} s  {n / to_sql_s:10,.0f} rows/s")
    print(f"write_bars (COPY upsert):   {upsert_s:6.2f} s  {n / upsert_s:10,.0f} rows/s")
    print(f"ratio: {ratio:.1f}x (goal >= 4x)")
    print(f"re-run: {rewritten} rows changed, {stored} stored (expected 0 and {written})")
    ok = ratio >= 4 and rewritten == 0 and stored == written == n
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
