"""The ``quant`` command: ``quant demo`` runs the main job on the embedded defaults."""

from __future__ import annotations

import argparse
import logging
import sys
import time

import pandas as pd
from rich.console import Console
from rich.table import Table

from quant_assets.settings import Settings

console = Console()
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``quant`` console script."""
    parser = argparse.ArgumentParser(prog="quant", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize the demo window end to end (embedded defaults)")
    demo.add_argument("--start", help="first session (default QUANT_DEMO_START)")
    demo.add_argument("--end", help="last session (default QUANT_DEMO_END)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("quant_assets").setLevel(logging.INFO)
    if args.command == "demo":
        return run_demo(Settings(), args.start, args.end)
    return 2


def run_demo(settings: Settings, start: str | None, end: str | None) -> int:
    """Materialize raw bars of the demo window through Dagster and print where they are."""
    from quant_assets.runner import ensure_dagster_home

    dagster_home = ensure_dagster_home(settings)
    import dagster as dg

    from quant_assets.definitions import defs
    from quant_assets.runner import run_partition_range
    from quant_assets.storage.database import get_engine, read_from_db

    first = pd.Timestamp(start or settings.demo_start)
    last = pd.Timestamp(end or settings.demo_end)
    console.rule(f"quant demo: {first.date()} … {last.date()}, {len(settings.tickers)} tickers")
    began = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        result = run_partition_range(
            defs, "ingest_raw_bars", first, last, settings.tickers, instance
        )
    counts = read_from_db(
        "SELECT ticker, COUNT(*) AS bars, MIN(ts) AS first_ts, MAX(ts) AS last_ts "
        "FROM price_data GROUP BY ticker ORDER BY ticker",
        get_engine(settings),
        utc_columns=["first_ts", "last_ts"],
    )
    table = Table(title="price_data")
    for col in counts.columns:
        table.add_column(col)
    for row in counts.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    console.print(table)
    console.print(f"run {result.run_id} {'succeeded' if result.success else 'FAILED'} "
                  f"in {time.monotonic() - began:.1f} s")
    console.print(f"bars stored in {settings.safe_url()} ({int(counts['bars'].sum())} rows)")
    console.print(f"Dagster instance: DAGSTER_HOME={dagster_home} — see it with `make dagster-dev`")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
