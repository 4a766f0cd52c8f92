"""``features`` and ``labels``: derived tables of the adjusted bars, partitioned by day like them
and built for every ticker of the market resource by one multi-asset step (a run that selects
both reads each ticker's bars once), and the ``daily_tables`` job (adjusted bars → features and
labels over a range of days)."""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from quant_assets.daily_tables import (
    build_features_and_labels,
    build_labels,
    label_spec_json,
    write_features,
    write_labels,
)
from quant_assets.defs.configs import TickersConfig, config_class, dataclass_values
from quant_assets.defs.metadata import coverage, json_value
from quant_assets.defs.partitions import BIG_TABLES_POOL, partition_days, session_partitions
from quant_assets.defs.progress import ProgressLog
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.features.spec import FEATURE_SPEC
from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.storage.bars import rows_per_ticker

CHECK_FINITE = "finite_after_warmup"
CHECK_LABELS = "labels_consistent"


FEATURES, LABELS = dg.AssetKey("features"), dg.AssetKey("labels")

# Triple-barrier parameters (LabelSpec's fields and defaults) and the tickers to build.
LabelsConfig = config_class("LabelsConfig", LabelSpec, base=TickersConfig)


@dg.multi_asset(
    name="features_and_labels",
    specs=[
        dg.AssetSpec(
            FEATURES,
            deps=[dg.AssetKey("adjusted_bars")],
            group_name="features",
            kinds={"sql", "pandas"},
            description=(
                "create_features() of the total-return adjusted bars (pandas-ta RSI, MACD, EMAs, "
                "Bollinger bands, realized vol, time of day, lagged returns), table features. "
                "Each session is warmed up from the ticker's earlier bars (counted in bars, so a "
                "thin ticker reaches back further); a hole of more than a week of sessions "
                "restarts the series; no lookahead."
            ),
        ),
        dg.AssetSpec(
            LABELS,
            deps=[dg.AssetKey("adjusted_bars")],
            group_name="features",
            kinds={"sql", "numba"},
            description=(
                "Triple-barrier labels (-1 down / 0 neutral / +1 up) of the adjusted bars, table "
                "labels. Barriers at ±σ·k from an EWM volatility of past per-minute returns; the "
                "vertical barrier, horizon minutes (wall clock) later and within the session, "
                "gives 0. Sessions still in progress are skipped."
            ),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_FINITE,
            asset=FEATURES,
            description="Model inputs are finite on every warmed-up row.",
        ),
        dg.AssetCheckSpec(
            CHECK_LABELS,
            asset=LABELS,
            description="Labels in {-1, 0, 1}; t1 after ts and inside the same session.",
        ),
    ],
    partitions_def=session_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=BIG_TABLES_POOL,
    can_subset=True,
)
def features_and_labels(
    context: dg.AssetExecutionContext,
    config: LabelsConfig,
    database: DatabaseResource,
    market: MarketSourceResource,
) -> Iterator[dg.MaterializeResult]:
    """Features and/or labels (whichever the run selects) of every day of this run for each
    ticker; one step, so a run that builds both reads each ticker's bars once."""
    engine = database.engine
    spec = LabelSpec(**dataclass_values(config, LabelSpec))
    want_features = FEATURES in context.selected_asset_keys
    want_labels = LABELS in context.selected_asset_keys
    days = partition_days(context.partition_keys)
    now = pd.Timestamp.now(tz="UTC")
    done = [d for d in days if calendar.span_of_days(d, d)[1] <= now] if want_labels else []
    if want_labels and len(done) < len(days):
        context.log.info(f"{len(days) - len(done)} session(s) not over: no labels for them yet")
    tickers = config.chosen(market.tickers)
    feature_frames, label_frames = [], []
    progress = ProgressLog(context.log, len(tickers))
    for i, ticker in enumerate(tickers, start=1):
        if want_features:
            frame, labelled = build_features_and_labels(engine, ticker, days, done, spec)
            write_features(frame, engine)
            feature_frames.append(frame)
        elif done:
            labelled = build_labels(engine, ticker, done, spec)
        if done:
            write_labels(labelled, spec, engine)
            label_frames.append(labelled)
        built = [f"{len(frame)} feature rows"] if want_features else []
        built += [f"{len(labelled)} labels"] if done else []
        progress.step(i, f"{ticker}: {', '.join(built) or 'nothing'}")
    # A run may build only some tickers: the partitions' figures still cover every one.
    span = calendar.span_of_days(days[0], days[-1])
    if want_features:
        stored = rows_per_ticker(engine, "features", market.tickers, *span)
        yield _features_result(feature_frames, tickers, stored)
    if want_labels:
        stored = rows_per_ticker(engine, "labels", market.tickers, *span)
        yield _labels_result(label_frames, spec, tickers, stored)


def _per_ticker(
    table: pd.DataFrame, tickers: list[str], stored: dict[str, int], extra: str | None = None
) -> dict[str, dg.MetadataValue]:
    """``coverage`` of this run's rows per ticker (zero where none; and the ``extra`` column's
    sum) against the rows stored."""
    counts = table.groupby("ticker").size() if len(table) else pd.Series(dtype=int)
    extras = table.groupby("ticker")[extra].sum() if extra and len(table) else pd.Series(dtype=int)
    cells = {
        t: [f"{int(counts.get(t, 0)):,}", *([f"{int(extras.get(t, 0)):,}"] if extra else [])]
        for t in tickers
    }
    return {
        "tickers": dg.MetadataValue.int(len(tickers)),
        **coverage(cells, ["rows", *([extra] if extra else [])], stored),
    }


def _features_result(
    frames: list[pd.DataFrame], tickers: list[str], stored: dict[str, int]
) -> dg.MaterializeResult:
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    inputs = table[list(FEATURE_SPEC.columns)].astype("float64") if len(table) else None
    warm = table["warm"].astype(bool) if len(table) else pd.Series([], dtype=bool)
    bad_rows = 0 if inputs is None else int((~np.isfinite(inputs[warm])).any(axis=1).sum())
    nan_counts = {} if inputs is None else {c: int(n) for c, n in inputs.isna().sum().items()}
    with_warm = table.assign(warm=warm) if len(table) else table
    per_ticker = _per_ticker(with_warm, tickers, stored, "warm")
    return dg.MaterializeResult(
        asset_key=FEATURES,
        metadata={
            "rows": dg.MetadataValue.int(len(table)),
            "warm_rows": dg.MetadataValue.int(int(warm.sum())),
            "feature_version": dg.MetadataValue.text(FEATURE_SPEC.version),
            "model_inputs": json_value(list(FEATURE_SPEC.columns)),
            "nan_counts": json_value(nan_counts),
            **per_ticker,
        },
        check_results=[
            dg.AssetCheckResult(
                asset_key=FEATURES,
                check_name=CHECK_FINITE,
                passed=bad_rows == 0,
                metadata={"warm_rows_with_nan_or_inf": bad_rows},
            )
        ],
    )


def _labels_result(
    frames: list[pd.DataFrame], spec: LabelSpec, tickers: list[str], stored: dict[str, int]
) -> dg.MaterializeResult:
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label"])
    counts = table["label"].value_counts(dropna=False)
    balance = {str(k): int(v) for k, v in counts.items()}
    return dg.MaterializeResult(
        asset_key=LABELS,
        metadata={
            "rows": dg.MetadataValue.int(len(table)),
            "class_balance": json_value(balance),
            "label_spec": json_value(label_spec_json(spec)),
            **_per_ticker(table, tickers, stored),
        },
        check_results=[_label_check(table)],
    )


def _label_check(table: pd.DataFrame) -> dg.AssetCheckResult:
    labelled = table[table["label"].notna()]
    bad_value = int((~labelled["label"].isin([-1, 0, 1])).sum())
    if len(labelled):
        same_session = calendar.session_labels(labelled["t1"]) == calendar.session_labels(
            labelled["ts"]
        )
        bad_t1 = int(((labelled["t1"] <= labelled["ts"]) | ~same_session).sum())
    else:
        bad_t1 = 0
    return dg.AssetCheckResult(
        asset_key=LABELS,
        check_name=CHECK_LABELS,
        passed=bad_value == 0 and bad_t1 == 0,
        metadata={"bad_values": bad_value, "bad_t1": bad_t1},
    )


daily_tables_job = dg.define_asset_job(
    "daily_tables",
    selection=dg.AssetSelection.assets("adjusted_bars", FEATURES, LABELS),
    description="Adjusted bars, features and labels for a range of days, every ticker.",
)
