"""The ``quant`` command: ``quant demo`` runs the main job on the embedded defaults."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quant_assets.deployment.model_config import RegistryError
from quant_assets.deployment.registry_cli import add_registry_parser, run_registry_command
from quant_assets.ingestion.history_import import HistoryImportError, TickerImport
from quant_assets.market.bar_validation import BarValidationError
from quant_assets.market.factory import SourceConfigError
from quant_assets.market.file_source import FileSourceError
from quant_assets.market.sources import SourceRangeError, SourceRequestError
from quant_assets.settings import SOURCES, Settings
from quant_assets.storage.database import DatabaseUnavailableError

if TYPE_CHECKING:
    from quant_assets.ingestion.poller import BarsReporter, EngineFactory

console = Console()
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Errors whose message says what is wrong and what to do: shown as one line, not a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnavailableError,
    SourceConfigError,
    FileSourceError,
    SourceRangeError,
    SourceRequestError,
    BarValidationError,
    RegistryError,
    HistoryImportError,
    FileNotFoundError,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``quant`` console script."""
    parser = argparse.ArgumentParser(prog="quant", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize the demo window end to end (embedded defaults)")
    demo.add_argument("--start", help="first session (default QUANT_DEMO_START)")
    demo.add_argument("--end", help="last session (default QUANT_DEMO_END)")
    ingest = sub.add_parser(
        "ingest",
        help="run the live poller service (Ctrl-C / SIGTERM stop it cleanly)",
        description="Poll the newest bars of every ticker during market hours, store them, "
        "queue missed minutes for backfill. With --replay, run the same loop on a simulated "
        "clock against the configured source's history (any source: synthetic, files, "
        "vendors), as fast as the machine allows (it writes to the configured database).",
    )
    ingest.add_argument(
        "--replay",
        nargs=2,
        metavar=("START", "END"),
        help="simulated span, ISO date or date-time (New York time unless a zone is given)",
    )
    ingest.add_argument("--tickers", help="comma-separated subset (default QUANT_TICKERS)")
    ingest.add_argument("--interval", type=float, help="poll interval in s (QUANT_POLL_INTERVAL_S)")
    ingest.add_argument("--lookback", type=int, help="minutes asked for per poll (default 5)")
    ingest.add_argument("--buffer-rows", type=int, help="bars held while the database is down")
    ingest.add_argument(
        "--dagster",
        choices=("auto", "on", "off"),
        default="auto",
        help="report runless raw_bars events to the Dagster instance (auto: when DAGSTER_HOME "
        "is set)",
    )
    ingest.add_argument(
        "--score",
        action="store_true",
        help="after each write, score every ticker's newest minute with the champion and store "
        "the predictions (a LiveScorer: the history is kept between minutes)",
    )
    add_import_parsers(sub)
    backfill = sub.add_parser(
        "backfill",
        help="fill the queued gaps now (after hours), one raw_bars run per partition",
    )
    backfill.add_argument("--list", action="store_true", help="only show the open queue entries")
    backfill.add_argument("--limit", type=int, help="at most this many open entries")
    export = sub.add_parser(
        "export-features",
        help="write a sample CSV of features (+ adjusted close, labels) and its spec JSON",
        description="Export the features rows of the sessions START … END (New York dates, "
        "inclusive), joined with the adjusted close and the labels where present, as CSV; "
        "the feature spec and a description of every column go beside it as <name>.spec.json.",
    )
    export.add_argument("--start", required=True, help="first session, YYYY-MM-DD")
    export.add_argument("--end", required=True, help="last session, YYYY-MM-DD")
    export.add_argument("--tickers", help="comma-separated subset (default: every ticker)")
    export.add_argument(
        "--out", help="CSV path (default QUANT_HOME/exports/features_<start>_<end>.csv)"
    )
    evaluate = sub.add_parser(
        "evaluate",
        help="walk-forward evaluation: retrain both models and the logistic baseline on K "
        "expanding folds, each scored on the block after it",
        description="Cut the newest labelled sessions into K expanding folds (purge and embargo "
        "as in training), retrain the LSTM, the Transformer and the logistic baseline on each and "
        "score them on the block of sessions after it: macro-F1, net Sharpe at the default cost "
        "and the probabilistic Sharpe ratio, per fold and as mean ± sd. One Dagster run of the "
        "job 'evaluate'; the table and plot are on the asset walk_forward and in MLflow (run "
        "walk_forward). K = 3 on the demo's 40 sessions × 20 tickers takes about 4 minutes on 2 "
        "CPU cores (each fold trains both networks as the nightly does).",
    )
    evaluate.add_argument("--folds", type=int, default=3, help="K expanding folds (default 3)")
    evaluate.add_argument(
        "--block-sessions", type=int, help="sessions per scored block (default sessions // (K+1))"
    )
    evaluate.add_argument(
        "--sessions", type=int, help="newest labelled sessions used (default QUANT_TRAIN_SESSIONS)"
    )
    evaluate.add_argument("--tickers", help="comma-separated subset (default QUANT_TICKERS)")
    status = sub.add_parser(
        "status",
        help="data freshness, backfill queue, champion and drift at a glance",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_registry_parser(sub)
    args = parser.parse_args(argv)
    # TensorFlow's C++ banner (oneDNN, "no CUDA") is noise at a terminal; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("quant_assets").setLevel(logging.INFO)
    try:
        return _run(args)
    except ValidationError as err:  # the settings: one line per bad value, no traceback
        for problem in err.errors():
            where = ".".join(str(x) for x in problem["loc"]) or "settings"
            console.print(f"[red]configuration:[/red] {escape(where)}: {escape(problem['msg'])}")
        return 2
    except USER_ERRORS as err:
        console.print(f"[red]{type(err).__name__}:[/red] {escape(str(err))}")
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return run_demo(Settings(), args.start, args.end)
    if args.command == "ingest":
        return run_ingest(Settings(), args)
    if args.command == "import":
        return run_import(Settings(**({"source": args.source} if args.source else {})), args)
    if args.command == "import-actions":
        return run_import_actions(Settings(), Path(args.file))
    if args.command == "backfill":
        return run_backfill(Settings(), args.list, args.limit)
    if args.command == "export-features":
        return run_export_features(Settings(), args)
    if args.command == "evaluate":
        return run_evaluate(Settings(), args)
    if args.command == "status":
        return run_status(Settings(), args.json)
    if args.command == "registry":
        return run_registry_command(args)
    return 2


def run_demo(settings: Settings, start: str | None, end: str | None) -> int:
    """Run the demo pipeline (see ``quant_assets.demo``) on the DAGSTER_HOME instance."""
    from quant_assets.runner import ensure_dagster_home

    dagster_home = ensure_dagster_home(settings)
    from quant_assets.demo import run_demo as run

    return run(settings, start, end, dagster_home)


def run_ingest(settings: Settings, args: argparse.Namespace) -> int:
    """``quant ingest``: the live poller; with ``--replay`` the same loop on a simulated clock."""
    from contextlib import ExitStack

    from quant_assets.ingestion.poller import Poller, PollerConfig
    from quant_assets.ingestion.poller_replay import AsOfSource, parse_time, replay
    from quant_assets.market.factory import source_from_settings
    from quant_assets.runner import poller_reporter
    from quant_assets.storage.database import get_engine

    tickers = (
        tuple(t.strip().upper() for t in args.tickers.split(",") if t.strip())
        if args.tickers
        else None
    )
    config = PollerConfig.from_settings(
        settings,
        tickers=tickers,
        poll_interval_s=args.interval,
        lookback_minutes=args.lookback,
        buffer_max_rows=args.buffer_rows,
    )

    def engine_factory():  # an Engine (sqlalchemy imported lazily)
        return get_engine(settings)

    with ExitStack() as stack:
        reporter = poller_reporter(settings, args.dagster, stack)
        console.print(
            f"database {settings.safe_url()}; source {settings.source}; "
            f"{len(config.tickers)} tickers; Dagster events "
            f"{'on' if reporter is not None else 'off'}; live scoring "
            f"{'on' if args.score else 'off'}"
        )
        if args.score:
            reporter = with_scoring(reporter, settings, engine_factory, config.tickers)
        if args.replay:
            start, end = (parse_time(t) for t in args.replay)
            result = replay(
                source_from_settings(settings),
                start,
                end,
                engine_factory,
                config,
                reporter=reporter,
            )
            _print_counters(result.stats.as_dict(), "replay")
            console.print(f"replayed {start} .. {end} (UTC)")
            console.print(
                f"{(end - start).total_seconds() / 3600:.1f} h simulated in {result.wall_s:.1f} s "
                f"({result.speedup:,.0f}x)"
            )
            return 0
        source = source_from_settings(settings)
        if settings.source == "synthetic":
            # The synthetic market knows the whole year: show it as a live feed would.
            source = AsOfSource(source, lambda: pd.Timestamp.now(tz="UTC"))
        poller = Poller(config, source, engine_factory, reporter=reporter)
        with poller.handle_signals():
            stats = poller.run()
        _print_counters(stats.as_dict(), "poller stopped")
    return 0


def with_scoring(
    reporter: BarsReporter | None,
    settings: Settings,
    engine_factory: EngineFactory,
    tickers: tuple[str, ...],
) -> BarsReporter:
    """The poller's reporter, scoring the newest minute with the champion before reporting."""
    from quant_assets.deployment.registry import ModelRegistry
    from quant_assets.monitoring.live_scorer import ChampionScoring

    scoring = ChampionScoring(ModelRegistry.from_settings(settings), engine_factory, tickers)

    def report(written: pd.DataFrame, source: str) -> int:
        scoring(written)
        return reporter(written, source) if reporter is not None else 0

    return report


def _print_counters(counters: dict[str, int], title: str) -> None:
    table = Table(title=title)
    table.add_column("counter")
    table.add_column("value", justify="right")
    for name, value in counters.items():
        table.add_row(name, f"{value:,}")
    console.print(table)


def add_import_parsers(sub: argparse._SubParsersAction) -> None:
    """``quant import`` and ``quant import-actions``."""
    load = sub.add_parser(
        "import",
        help="load a range of history from the source through validation (one raw_bars run)",
        description="Fetch the sessions START … END of the tickers from the source, validate "
        "and store them as one Dagster run of raw_bars (the UI shows its partitions), then "
        "report per ticker what is stored. Without --start / --end: the source's own coverage "
        "(the file source knows it). Re-importing changes nothing.",
    )
    load.add_argument("--source", choices=SOURCES, help="this command's source (QUANT_SOURCE)")
    load.add_argument("--start", type=date.fromisoformat, help="first session, YYYY-MM-DD")
    load.add_argument("--end", type=date.fromisoformat, help="last session, YYYY-MM-DD")
    load.add_argument("--tickers", help="comma-separated subset (default QUANT_TICKERS)")
    actions = sub.add_parser(
        "import-actions",
        help="load a corporate-actions ledger CSV (ticker, ex_date, action, value)",
        description="Store the splits and cash dividends of a CSV in the ledger (the format of "
        "the file source's corporate_actions.csv: ticker, ex_date, action split|dividend, "
        "value). Each row passes the ledger's validation: unknown tickers, ratios or "
        "dividends ≤ 0, dividends ≥ the stored close before the ex-date and conflicting "
        "duplicates are refused with their reason. Importing twice changes nothing.",
    )
    actions.add_argument("file", help="the ledger CSV")


def run_import(settings: Settings, args: argparse.Namespace) -> int:
    """``quant import``: a span of history through ``raw_bars``, then the per-ticker report."""
    from rich.progress import Progress

    from quant_assets.feature_export import parse_tickers
    from quant_assets.ingestion.history_import import import_report, import_span
    from quant_assets.market.calendar import MARKET_TZ
    from quant_assets.market.factory import source_from_settings
    from quant_assets.runner import import_raw_bars, ticker_blocks
    from quant_assets.storage.database import get_engine

    tickers = parse_tickers(args.tickers) or settings.tickers
    runs = len(ticker_blocks(tickers))  # refuses a ticker without partitions before any work
    source = source_from_settings(settings)
    today = pd.Timestamp.now(tz=MARKET_TZ).date()
    span = import_span(source, tickers, args.start, args.end, settings.partitions_start, today)
    for note in span.notes:
        console.print(f"[yellow]{escape(note)}")
    console.print(
        f"importing {len(span.sessions)} sessions {span.first.date()} … {span.last.date()} of "
        f"{len(tickers)} tickers from {source.name}"
        + (f" ({runs} runs: the tickers are not neighbours in QUANT_TICKERS)" if runs > 1 else "")
    )
    console.print(f"  into {settings.safe_url()}")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("raw_bars", total=len(tickers))
        runs = import_raw_bars(
            settings, tickers, span.first, span.last, lambda _: progress.advance(task)
        )
    _print_import(import_report(get_engine(settings), tickers, span))
    changed = (
        f"{runs.rows_changed:,} rows new or changed"
        if runs.rows_changed
        else "0 rows changed: every bar was already stored (a re-import changes nothing)"
    )
    console.print(f"{changed}; Dagster run {', '.join(runs.run_ids)} (ingest_raw_bars)")
    return 0


def _print_import(reports: list[TickerImport]) -> None:
    table = Table(
        title="imported, per ticker (as stored)",
        caption="share: typical share of minutes with a bar · ext.h: extended-hours rows",
    )
    for col in ("ticker", "sessions", "rows", "share", "ext.h", "refused", "holes", "truncated"):
        table.add_column(col, justify="left" if col == "ticker" else "right")
    for r in reports:
        cov = r.coverage
        table.add_row(
            r.ticker,
            f"{cov.sessions_with_bars}/{cov.sessions}",
            f"{r.rows:,}",
            "-" if np.isnan(r.typical_share) else f"{r.typical_share:.0%}",
            f"{r.extended_hours:,}",
            f"{sum(r.quarantined.values()):,}",
            str(len(cov.holes)),
            str(len(cov.truncated)),
        )
    console.print(table)
    for r in reports:
        console.print(f"  {escape(_import_line(r))}")


def _import_line(r: TickerImport) -> str:
    """One ticker's first and last bar, refused rows by reason, holes and truncated sessions."""
    if r.first_ts is None:
        return f"{r.ticker}: no bar stored"
    parts = [f"{r.ticker}: {r.first_ts:%Y-%m-%d %H:%M} … {r.last_ts:%Y-%m-%d %H:%M} UTC"]
    if r.quarantined:
        parts.append("refused " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.quarantined.items())))
    cov = r.coverage
    if cov.holes:
        parts.append(f"holes {', '.join(h.describe() for h in cov.holes)}")
    if cov.truncated:
        parts.append(f"truncated {', '.join(str(d.date()) for d in cov.truncated)}")
    return "; ".join(parts)


def run_import_actions(settings: Settings, path: Path) -> int:
    """``quant import-actions FILE``: a ledger CSV through the ledger's validation."""
    from quant_assets.corporate_actions.adjusted_store import find_stale_tickers
    from quant_assets.corporate_actions.ledger import describe_action, record_corporate_actions
    from quant_assets.corporate_actions.ledger import log as ledger_log
    from quant_assets.market.file_source import read_actions_file
    from quant_assets.storage.database import get_engine

    rows = read_actions_file(path)
    engine = get_engine(settings)
    # Every row is printed below with its outcome: the ledger's own line per row would repeat it.
    ledger_log.setLevel(logging.ERROR)
    update = record_corporate_actions(
        rows, engine, settings.tickers, source=f"import {path.name}"[:32]
    )
    console.print(
        f"{path}: {len(rows)} rows; stored {len(update.new)} new, {len(update.revised)} revised; "
        f"{update.unchanged} already stored; refused {len(update.rejected)}; deferred "
        f"{len(update.deferred)}"
    )
    outcomes = [
        update.new.assign(reason="new"),
        update.revised.assign(reason="revised"),
        update.rejected.assign(reason="refused: " + update.rejected["reason"].astype(str)),
        update.deferred.assign(reason="deferred: " + update.deferred["reason"].astype(str)),
    ]
    listed = [frame for frame in outcomes if len(frame)]
    if listed:
        table = Table(title="rows stored, refused or deferred")
        for col in ("line", "ticker", "action", "outcome"):
            table.add_column(col)
        for r in pd.concat(listed).sort_values("line").itertuples():
            table.add_row(
                str(r.line),
                escape(str(r.ticker)),
                escape(describe_action(r.ex_date, r.action, r.value)),
                escape(r.reason),
            )
        console.print(table)
    stale = find_stale_tickers(engine, settings.tickers)
    if stale:
        console.print(
            f"adjusted bars of {', '.join(s.ticker for s in stale)} are now stale: the next "
            "nightly run (or a corporate_actions materialization) rebuilds them"
        )
    return 0


def run_backfill(settings: Settings, list_only: bool, limit: int | None) -> int:
    """``quant backfill``: settle the open queue now (a raw_bars run per partition lacking bars)."""
    from rich.progress import Progress

    from quant_assets.ingestion import backfill_queue as queue
    from quant_assets.market.factory import source_from_settings
    from quant_assets.runner import backfill_now
    from quant_assets.storage.database import get_engine

    engine = get_engine(settings)
    open_entries = queue.entries(engine, queue.OPEN_STATUSES, limit=limit)
    counts = queue.status_counts(engine)
    console.print(
        "backfill queue: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty")
    )
    if list_only:
        table = Table(title="open backfill_queue entries")
        for col in ("id", "ticker", "start (UTC)", "minutes", "status", "detail"):
            table.add_column(col)
        for e in open_entries:
            table.add_row(
                str(e.id), e.ticker, f"{e.start:%Y-%m-%d %H:%M}", str(e.minutes), e.status,
                e.detail or "",
            )  # fmt: skip
        console.print(table)
        return 0
    if not open_entries:
        return 0
    with Progress(console=console) as progress:
        task = progress.add_task(
            "backfilling partitions", total=len(queue.by_partition(open_entries))
        )
        report = backfill_now(
            settings,
            engine,
            source_from_settings(settings),
            settings.tickers,
            open_entries,
            on_partition=lambda *_: progress.advance(task),
            skipped=lambda key: console.print(f"[yellow]no raw_bars partition {key}; skipped"),
        )
    _print_counters(report.__dict__, "quant backfill")
    return 0 if report.failed_runs == 0 else 1


def run_export_features(settings: Settings, args: argparse.Namespace) -> int:
    """``quant export-features``: the sample CSV and its spec (``quant_assets.feature_export``)."""
    from pathlib import Path

    from quant_assets.feature_export import (
        NoFeatureRowsError,
        default_out_path,
        export_features,
        parse_tickers,
    )
    from quant_assets.storage.database import get_engine

    try:
        out = Path(args.out) if args.out else default_out_path(settings, args.start, args.end)
        result = export_features(
            get_engine(settings), args.start, args.end, out, parse_tickers(args.tickers)
        )
    except (NoFeatureRowsError, ValueError) as err:
        console.print(f"[red]export-features:[/red] {escape(str(err))}")
        return 1
    console.print(
        f"wrote {result.rows:,} rows ({result.labeled_rows:,} labeled) of "
        f"{', '.join(result.tickers)}, {result.first_ts:%Y-%m-%d %H:%M} … "
        f"{result.last_ts:%Y-%m-%d %H:%M} UTC"
    )
    console.print(f"  data  {result.csv_path}")
    console.print(f"  spec  {result.spec_path}")
    return 0


def run_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    """``quant evaluate``: one ``evaluate`` run; its table printed (``defs.evaluation``)."""
    from rich.markdown import Markdown

    from quant_assets.defs.evaluation import ASSET, evaluate_run_config
    from quant_assets.feature_export import parse_tickers
    from quant_assets.runner import run_evaluation

    run_config = evaluate_run_config(
        args.folds, args.block_sessions, args.sessions, parse_tickers(args.tickers)
    )
    result = run_evaluation(settings, run_config)
    if not result.success:
        for event in result.get_step_failure_events():
            console.print(f"[red]evaluate:[/red] {escape(event.event_specific_data.error.message)}")
        return 1
    metadata = result.asset_materializations_for_node(ASSET)[0].metadata
    console.print(Markdown(metadata["scores"].value))
    console.print(f"MLflow: {escape(metadata['mlflow'].value)}")
    console.print(f"Dagster run {result.run_id}; {metadata['seconds'].value:.0f} s")
    return 0


def run_status(settings: Settings, as_json: bool) -> int:
    """``quant status``: freshness, backfill queue, champion and drift (``quant_assets.status``)."""
    import json

    from quant_assets.status import gather_status, render_status

    report = gather_status(settings)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render_status(report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
