"""Corporate actions in Dagster: the ledger, adjusted bars, their checks, schedule and sensor.

* ``corporate_actions`` (unpartitioned): fetches splits and cash dividends into the ledger
  table. Its metadata lists new / revised / refused / deferred actions and the **stale
  tickers**: those whose stored adjusted bars were built from a different set of applied
  actions than the ledger now implies, with the number of stale sessions and why. Its data
  version is a hash of the ledger, so an unchanged ledger does not mark anything downstream as
  changed.
* ``adjusted_bars`` (one partition per session, mapped from that day's ``raw_bars`` of every
  ticker): raw × cumulative factor, for every ticker of the market resource (or the run
  config's ``tickers``). When a ticker's ledger fingerprint changed, *every* stored session of
  the ticker is rebuilt in one transaction, and each earlier day whose factors changed gets its
  own materialization event in this run, with the tickers and the reason ("AAPL: rebuilt
  because of new split 2:1 ex 2026-05-28"): the rebuild is visible per partition in the UI,
  not silent. Per-ticker figures (mode, rows, sessions) are in the metadata.
* ``adjusted_bars_rebuild_sensor``: when ``corporate_actions`` reports stale tickers, requests
  one ``rebuild_adjusted_bars`` run per ticker (its newest day, with ``tickers: [that one]``;
  the run rebuilds all of that ticker's earlier sessions as above). The run key carries the
  fingerprint, so one ledger change launches one rebuild.
* ``premarket_corporate_actions_schedule``: 08:00 America/New_York on weekdays, before the open.

(No ``from __future__ import annotations`` here: Dagster inspects the ``context`` annotation at
definition time and refuses it as a string.)
"""

import hashlib

import dagster as dg
import pandas as pd

from quant_assets.corporate_actions.adjusted_store import (
    Staleness,
    TickerBuild,
    find_stale_tickers,
    read_session_boundaries,
    rebuild_ticker,
)
from quant_assets.corporate_actions.adjustment import JUMP_K, MIN_JUMP_LOG, find_unexplained_jumps
from quant_assets.corporate_actions.ledger import (
    LedgerUpdate,
    describe_action,
    fetch_corporate_actions,
    read_corporate_actions,
)
from quant_assets.defs.configs import TickersConfig
from quant_assets.defs.metadata import coverage, json_value
from quant_assets.defs.partitions import (
    BIG_TABLES_POOL,
    day_key,
    partition_days,
    session_partitions,
)
from quant_assets.defs.progress import ProgressLog
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.market import calendar
from quant_assets.market.coverage import MAX_GAP_SESSIONS
from quant_assets.storage.bars import rows_per_ticker
from quant_assets.storage.database import refresh_statistics

GROUP = "corporate_actions"
CHECK_LEDGER_VALID = "ledger_valid"
CHECK_NO_JUMP = "no_unexplained_jump"
MAX_LISTED = 50  # rows listed in markdown / JSON metadata before "… and N more"


@dg.asset(
    group_name=GROUP,
    kinds={"sql", "pandas"},
    description=(
        "The corporate-action ledger (table corporate_actions): splits and cash dividends from "
        "the market source, keyed on (ticker, ex_date, action) so fetching twice stores once. "
        "Metadata lists the tickers whose adjusted bars are now stale."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_LEDGER_VALID,
            asset="corporate_actions",
            description=(
                "The source delivered no unusable action (ratio ≤ 0, dividend ≤ 0 or ≥ the "
                "prior close, unknown ticker) and every ticker was fetched."
            ),
        )
    ],
)
def corporate_actions(
    context: dg.AssetExecutionContext, database: DatabaseResource, market: MarketSourceResource
) -> dg.MaterializeResult:
    """Refresh the ledger and report which adjusted bars it makes stale."""
    engine = database.engine
    source = market.get_source()
    update = fetch_corporate_actions(market.tickers, source, engine, universe=market.tickers)
    stale = find_stale_tickers(engine, market.tickers)
    for s in stale:
        context.log.warning(
            f"{s.ticker}: {s.stale_sessions} adjusted sessions are stale because of "
            f"{'; '.join(s.changes)}; adjusted_bars will rebuild them"
        )
    ledger = read_corporate_actions(engine, market.tickers)
    return dg.MaterializeResult(
        metadata=_ledger_metadata(update, stale, ledger, source.name, database.describe()),
        data_version=dg.DataVersion(_ledger_hash(ledger)),
        check_results=[_ledger_check(update)],
    )


@dg.asset(
    partitions_def=session_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=BIG_TABLES_POOL,
    group_name=GROUP,
    kinds={"sql", "pandas"},
    # A day depends on that day's raw_bars of every ticker: the mapping Dagster infers from a
    # day × ticker upstream with the same day dimension (MultiToSingleDimensionPartitionMapping).
    deps=["raw_bars", corporate_actions],
    description=(
        "Adjusted 1-minute bars (table adjusted_bars) = raw bars × cumulative corporate-action "
        "factors as of the newest stored data: total-return OHLC (what features and models "
        "use) plus a split-only close, volume × later split ratios, and the factors. One "
        "partition per session, for every ticker (per-ticker figures in the metadata). A "
        "ticker whose ledger changed is rebuilt entirely in one transaction; earlier days it "
        "rewrote are reported as materialized by this run, with the reason."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NO_JUMP,
            asset="adjusted_bars",
            description=(
                f"No session-open log return of adjusted closes above max({JUMP_K:g} robust "
                f"SDs, {MIN_JUMP_LOG:g}): the artefact of a missed or wrong split. Moves across "
                f"a hole of more than {MAX_GAP_SESSIONS} sessions are listed as a warning."
            ),
        )
    ],
)
def adjusted_bars(
    context: dg.AssetExecutionContext,
    config: TickersConfig,
    database: DatabaseResource,
    market: MarketSourceResource,
) -> dg.MaterializeResult:
    """Build the adjusted bars of the run's days for each ticker (whole tickers when their
    ledger changed)."""
    engine = database.engine
    days = partition_days(context.partition_keys)
    sessions = [d for d in days if calendar.is_session(d)]
    tickers = config.chosen(market.tickers)
    builds: list[TickerBuild] = []
    progress = ProgressLog(context.log, len(tickers))
    for i, ticker in enumerate(tickers, start=1):
        build = rebuild_ticker(engine, ticker, sessions)
        builds.append(build)
        progress.step(i, build.summary())
        for r in build.plan.skipped.itertuples():
            if not str(r.reason).startswith("before any data"):
                context.log.info(
                    f"{ticker}: skipped {describe_action(r.ex_date, r.action, r.value)}: {r.reason}"
                )
    _report_rebuilt_partitions(context, builds, set(days))
    refresh_statistics(engine, "adjusted_bars")  # the jump check's join right after a build
    boundaries = read_session_boundaries(engine, tickers)
    jumps = find_unexplained_jumps(boundaries, ledger=read_corporate_actions(engine, tickers))
    for j in jumps.itertuples():
        note = f" — ledger has {j.ledger_action} there" if j.ledger_action else ""
        if j.sessions_skipped:
            context.log.warning(
                f"{j.ticker}: move {j.log_return:+.3f} (log) across a hole of "
                f"{j.sessions_skipped} sessions before {j.session.date()}{note}: check that no "
                "split or dividend is missing there"
            )
            continue
        context.log.error(
            f"{j.ticker}: unexplained jump {j.log_return:+.3f} (log) at the open of "
            f"{j.session.date()} (threshold {j.threshold:.3f}){note}"
        )
    # A run may build only some tickers (a rebuild): the partition's figures still cover all.
    stored = rows_per_ticker(
        engine, "adjusted_bars", market.tickers, *calendar.span_of_days(days[0], days[-1])
    )
    return dg.MaterializeResult(
        metadata=_build_metadata(builds, stored, database.describe()),
        check_results=[_jump_check(jumps, boundaries)],
    )


# --- jobs, schedule, sensor ---------------------------------------------------------------------
premarket_corporate_actions_job = dg.define_asset_job(
    "premarket_corporate_actions",
    selection=dg.AssetSelection.assets(corporate_actions),
    description="Refresh the corporate-action ledger (before the open).",
)

rebuild_adjusted_bars_job = dg.define_asset_job(
    "rebuild_adjusted_bars",
    selection=dg.AssetSelection.assets(adjusted_bars),
    description="Build adjusted bars; a ticker whose ledger changed is rebuilt entirely.",
)

premarket_corporate_actions_schedule = dg.ScheduleDefinition(
    name="premarket_corporate_actions_schedule",
    job=premarket_corporate_actions_job,
    cron_schedule="0 8 * * 1-5",
    execution_timezone=calendar.MARKET_TZ,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="08:00 New York on weekdays: fetch splits and dividends before the open.",
)


@dg.asset_sensor(
    asset_key=dg.AssetKey("corporate_actions"),
    job=rebuild_adjusted_bars_job,
    name="adjusted_bars_rebuild_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch a rebuild of adjusted_bars for each ticker the new ledger made stale.",
)
def adjusted_bars_rebuild_sensor(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
):
    """One run per stale ticker, keyed on the ledger fingerprint (the same change runs once)."""
    materialization = asset_event.asset_materialization
    entry = None if materialization is None else materialization.metadata.get("stale_tickers")
    stale = {} if entry is None else dict(entry.value)  # type: ignore[attr-defined]
    if not stale:
        return dg.SkipReason("the ledger made no adjusted bars stale")
    return [
        dg.RunRequest(
            run_key=f"rebuild:{ticker}:{info['fingerprint'][:16]}",
            partition_key=day_key(info["last_session"]),
            run_config={"ops": {"adjusted_bars": {"config": {"tickers": [ticker]}}}},
            tags={"quant/rebuild_reason": f"{ticker}: {'; '.join(info['changes'])}"[:250]},
        )
        for ticker, info in sorted(stale.items())
        if session_partitions.has_partition_key(day_key(info["last_session"]))
    ]


# --- helpers ------------------------------------------------------------------------------------
def _report_rebuilt_partitions(
    context: dg.AssetExecutionContext, builds: list[TickerBuild], run_days: set[pd.Timestamp]
) -> None:
    """One materialization event per earlier day (not one of the run's own) that a full
    rebuild rewrote with new factors, naming each ticker rebuilt there and why."""
    first_partition = pd.Timestamp(session_partitions.start.date())
    reasons: dict[pd.Timestamp, dict[str, str]] = {}
    for build in builds:
        if build.mode != "full" or not build.stale_sessions:
            continue
        days = [d for d in build.stale_sessions if d >= first_partition and d not in run_days]
        context.log.warning(f"{build.summary()}; reporting {len(days)} rebuilt days")
        for day in days:
            reasons.setdefault(day, {})[build.ticker] = "; ".join(build.changes) or build.reason
    for day, by_ticker in sorted(reasons.items()):
        because = "; ".join(f"{t}: {why}" for t, why in sorted(by_ticker.items()))
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=day_key(day),
                description=f"rebuilt because of {because}",
                metadata={
                    "rebuilt_because": dg.MetadataValue.text(because),
                    "rebuilt_tickers": json_value(sorted(by_ticker)),
                },
            )
        )


def _ledger_hash(ledger: pd.DataFrame) -> str:
    rows = ledger.sort_values(["ticker", "ex_date", "action"])
    text = "\n".join(
        f"{r.ticker}|{pd.Timestamp(r.ex_date).date()}|{r.action}|{float(r.value).hex()}"
        for r in rows.itertuples()
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _actions_md(frame: pd.DataFrame, with_reason: bool = False) -> str:
    if frame.empty:
        return "none"
    lines = ["| ticker | action | reason |" if with_reason else "| ticker | action |"]
    lines.append("|---|---|---|" if with_reason else "|---|---|")
    for r in frame.head(MAX_LISTED).itertuples():
        what = describe_action(r.ex_date, r.action, r.value)
        lines.append(
            f"| {r.ticker} | {what} | {r.reason} |" if with_reason else f"| {r.ticker} | {what} |"
        )
    if len(frame) > MAX_LISTED:
        lines.append(f"\n… and {len(frame) - MAX_LISTED} more")
    return "\n".join(lines)


def _ledger_metadata(
    update: LedgerUpdate,
    stale: list[Staleness],
    ledger: pd.DataFrame,
    source_name: str,
    database: str,
) -> dict[str, dg.MetadataValue]:
    return {
        "new_actions": dg.MetadataValue.int(len(update.new)),
        "revised_actions": dg.MetadataValue.int(len(update.revised)),
        "unchanged_actions": dg.MetadataValue.int(update.unchanged),
        "refused_actions": dg.MetadataValue.int(len(update.rejected)),
        "deferred_future_actions": dg.MetadataValue.int(len(update.deferred)),
        "ledger_rows": dg.MetadataValue.int(len(ledger)),
        "unprocessed_rows": dg.MetadataValue.int(int(ledger["processed_at"].isna().sum())),
        "new": dg.MetadataValue.md(_actions_md(update.new)),
        "revised": dg.MetadataValue.md(_actions_md(update.revised)),
        "refused": dg.MetadataValue.md(_actions_md(update.rejected, with_reason=True)),
        "fetch_errors": json_value(update.errors),
        "stale_tickers": json_value(
            {
                s.ticker: {
                    "changes": s.changes,
                    "stale_sessions": s.stale_sessions,
                    "first_stale": None if s.first_stale is None else str(s.first_stale.date()),
                    "last_session": str(s.last_session.date()),
                    "fingerprint": s.fingerprint,
                }
                for s in stale
            }
        ),
        "stale_sessions": dg.MetadataValue.int(sum(s.stale_sessions for s in stale)),
        "source": dg.MetadataValue.text(source_name),
        "database": dg.MetadataValue.text(database),
    }


def _ledger_check(update: LedgerUpdate) -> dg.AssetCheckResult:
    refused = [
        f"{r.ticker} {describe_action(r.ex_date, r.action, r.value)}: {r.reason}"
        for r in update.rejected.head(MAX_LISTED).itertuples()
    ]
    return dg.AssetCheckResult(
        check_name=CHECK_LEDGER_VALID,
        passed=update.rejected.empty and not update.errors,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "refused": json_value(refused),
            "fetch_errors": json_value(update.errors),
        },
    )


def _build_metadata(
    builds: list[TickerBuild], stored: dict[str, int], database: str
) -> dict[str, dg.MetadataValue]:
    """What the run built, and what the table holds for its days for every market ticker."""
    full = [b for b in builds if b.mode == "full"]
    skipped = [
        f"{b.ticker} {describe_action(r.ex_date, r.action, r.value)}: {r.reason}"
        for b in builds
        for r in b.plan.skipped.itertuples()
        if not str(r.reason).startswith("before any data")
    ]
    cells = {
        b.ticker: [b.mode, f"{b.rows_written:,}", str(len(b.sessions_written))] for b in builds
    }
    return {
        "rows_written": dg.MetadataValue.int(sum(b.rows_written for b in builds)),
        "tickers": dg.MetadataValue.int(len(builds)),
        "full_rebuilds": dg.MetadataValue.int(len(full)),
        "earlier_sessions_rebuilt": dg.MetadataValue.int(sum(len(b.stale_sessions) for b in full)),
        "rebuilds": json_value([b.summary() for b in full]),
        "modes": json_value({b.ticker: b.mode for b in builds}),
        "actions_applied": dg.MetadataValue.int(sum(len(b.plan.applied) for b in builds)),
        "actions_skipped": json_value(skipped[:MAX_LISTED]),
        "pending_actions": dg.MetadataValue.int(sum(len(b.plan.pending()) for b in builds)),
        "ledger_fingerprints": json_value({b.ticker: b.plan.fingerprint for b in builds}),
        **coverage(cells, ["mode", "rows written", "sessions written"], stored),
        "series_for_models": dg.MetadataValue.text("total_return (open/high/low/close)"),
        "database": dg.MetadataValue.text(database),
    }


def _jump_check(jumps: pd.DataFrame, boundaries: pd.DataFrame) -> dg.AssetCheckResult:
    """ERROR on an unexplained jump; WARN when only moves across holes are listed."""
    across = jumps["sessions_skipped"] > 0
    listed = [
        f"{j.ticker} {j.session.date()}: {j.log_return:+.4f} > {j.threshold:.4f}"
        + (f" ({j.ledger_action})" if j.ledger_action else "")
        for j in jumps[~across].head(MAX_LISTED).itertuples()
    ]
    holes = [
        f"{j.ticker} {j.session.date()}: {j.log_return:+.4f} after {j.sessions_skipped} sessions"
        for j in jumps[across].head(MAX_LISTED).itertuples()
    ]
    return dg.AssetCheckResult(
        check_name=CHECK_NO_JUMP,
        passed=jumps.empty,
        severity=dg.AssetCheckSeverity.WARN if across.all() else dg.AssetCheckSeverity.ERROR,
        metadata={
            "jumps": json_value(listed),
            "moves_across_holes": json_value(holes),
            "session_opens_checked": dg.MetadataValue.int(
                max(0, len(boundaries) - boundaries["ticker"].nunique())
            ),
        },
    )
