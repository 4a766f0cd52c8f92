"""Training windows without leakage: chronological split, purge, embargo, train-only scaler.

Input: one row per bar (``load_labelled_features`` or ``create_features`` + labels), with the
model inputs named by ``FeatureSpec.columns``, ``warm`` (optional), ``label`` (−1/0/+1,
nullable) and ``t1`` (the bar that ended the label). Rules:

* **Samples.** A sample is the window of the last ``window`` *bars* of one ticker ending at a
  labelled bar t (features count bars, so windows do too; a missing minute is skipped like the
  indicators skip it). Every bar of the window must be warm with finite inputs. Windows may
  reach back into the previous session (the time-of-day inputs say where the session starts),
  exactly as live scoring does at 09:35.
* **Chronological segments by session** (never random), the same dates for every ticker:
  ``train`` < ``val`` < ``test`` < ``holdout``. The newest ``holdout_sessions`` are kept back
  as the unseen set for champion/challenger validation; the rest is split by the fractions.
* **Purge.** A sample whose label end t1 reaches the next segment's start is dropped (labels
  stop at the session close, so with session-aligned segments this only bites on data whose
  labels run longer; it is enforced and tested all the same).
* **Embargo.** A sample of a later segment is kept only when its whole input window starts at
  or after the segment start plus ``embargo_minutes``: no input bar of a validation, test or
  holdout sample lies in an earlier segment, and the first minutes after a boundary, whose
  inputs are serially correlated with the previous segment's labels, are skipped.
* **Scaler** fit on the train segment's rows only (bars with ts before the validation start);
  validation, test and holdout rows are transformed with it and never change it.
  Default ``robust``: (x − median) / IQR, then clipped to ±``scaler_clip``. Chosen over the
  plan's MinMaxScaler because the inputs are heavy-tailed (returns, volume ratio, MACD): min and
  max are set by a handful of outliers, squeeze the bulk of the data into a sliver of [0, 1]
  and move with every extreme minute, and a regime shift pushes live values far outside the
  train range; median/IQR is stable and the clip bounds what a shock can feed the network.
  ``minmax`` (seed behaviour: (x − min) / (max − min)) stays available.
* **Class weights** ``n / (3 · n_k)`` from the train labels (balanced).
* **Holdout market** (``holdout_bars``): when the rows carry prices (open, high, low, close)
  and ``sigma``, those of the holdout segment's bars are kept, so a model's holdout
  probabilities can be backtested on the same bars (``deployment.holdout_value``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.drift.reference import reference_stats_from_frame
from quant_assets.features.spec import FEATURE_SPEC, FeatureSpec
from quant_assets.labels import CLASS_NAMES, CLASS_ORDER, LabelSpec
from quant_assets.market import calendar
from quant_assets.models.config import TrainingConfig
from quant_assets.models.windows import WindowIndex

SEGMENTS: tuple[str, ...] = ("train", "val", "test", "holdout")
REFERENCE_QUANTILES: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 11), 2).tolist())
_NAT = np.iinfo(np.int64).min
_MINUTE_NS = 60_000_000_000


def label_to_class(labels: np.ndarray) -> np.ndarray:
    """−1/0/+1 labels → class indices 0/1/2 (the order of ``CLASS_ORDER``)."""
    return (np.asarray(labels).astype(np.int64) + 1).astype(np.int8)


def class_to_label(classes: np.ndarray) -> np.ndarray:
    """Class indices 0/1/2 → −1/0/+1."""
    return np.asarray(classes).astype(np.int64) - 1


# --- split plan -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitPlan:
    """First and last session of each segment (None: the segment is empty)."""

    sessions: dict[str, tuple[pd.Timestamp, pd.Timestamp] | None]

    def bounds(self, name: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """UTC [start, end) of a segment's New York days."""
        span = self.sessions.get(name)
        return None if span is None else calendar.span_of_days(*span)

    def to_dict(self) -> dict[str, Any]:
        return {
            name: None if span is None else [span[0].date().isoformat(), span[1].date().isoformat()]
            for name, span in self.sessions.items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitPlan:
        return cls(
            {
                name: None if span is None else (pd.Timestamp(span[0]), pd.Timestamp(span[1]))
                for name, span in data.items()
            }
        )


def plan_split(
    sessions: Sequence[Any], holdout_sessions: int, val_fraction: float, test_fraction: float
) -> SplitPlan:
    """Chronological train / val / test / holdout segments over whole sessions."""
    days = sorted({calendar.to_session_label(s) for s in sessions})
    usable = len(days) - holdout_sessions
    n_val = max(1, round(usable * val_fraction))
    n_test = max(1, round(usable * test_fraction))
    n_train = usable - n_val - n_test
    if n_train < 1:
        raise ValueError(
            f"{len(days)} sessions are too few for {holdout_sessions} holdout + "
            f"{n_val} validation + {n_test} test sessions and at least one to train on"
        )
    cuts = np.cumsum([0, n_train, n_val, n_test, holdout_sessions])
    out: dict[str, tuple[pd.Timestamp, pd.Timestamp] | None] = {}
    for name, lo, hi in zip(SEGMENTS, cuts[:-1], cuts[1:], strict=True):
        out[name] = (days[lo], days[hi - 1]) if hi > lo else None
    return SplitPlan(out)


# --- scaler ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature affine map then clip: ``clip((x − center) / scale, −clip, clip)``."""

    kind: str
    columns: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    clip: float

    @classmethod
    def fit(
        cls, rows: np.ndarray, columns: Sequence[str], kind: str = "robust", clip: float = 10.0
    ) -> FeatureScaler:
        """Fit on rows (n, F) of the train segment (finite values only)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(columns) or rows.shape[0] == 0:
            raise ValueError(
                f"scaler needs rows of shape (n > 0, {len(columns)}), got {rows.shape}"
            )
        if kind not in ("robust", "minmax"):
            raise ValueError(f"unknown scaler kind {kind!r}")
        # Column by column: the nan-aware reductions copy their input, one column at a time
        # instead of the whole (n, F) matrix.
        center, scale, std = (np.empty(rows.shape[1]) for _ in range(3))
        for j in range(rows.shape[1]):
            values = rows[:, j]
            if kind == "robust":
                q25, center[j], q75 = np.nanpercentile(values, [25, 50, 75])
                scale[j] = q75 - q25
            else:
                center[j] = np.nanmin(values)
                scale[j] = np.nanmax(values) - center[j]
            std[j] = np.nanstd(values)
        scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
        return cls(kind, tuple(columns), center.astype(np.float64), scale.astype(np.float64), clip)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale an array whose last axis is the features; float32 out."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} features, got {x.shape[-1]}")
        out = np.subtract(x, self.center.astype(np.float32), dtype=np.float32)
        out /= self.scale.astype(np.float32)  # in place: one output array, no temporaries
        return np.clip(out, -self.clip, self.clip, out=out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "formula": "clip((x - center) / scale, -clip, clip)",
            "clip": float(self.clip),
            "columns": list(self.columns),
            "center": [float(v) for v in self.center],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureScaler:
        columns = tuple(data["columns"])
        center = np.asarray(data["center"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
        if center.shape != (len(columns),) or scale.shape != (len(columns),):
            raise ValueError("scaler center/scale do not match its columns")
        if not (np.isfinite(center).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("scaler parameters must be finite with scale > 0")
        return cls(str(data["kind"]), columns, center, scale, float(data["clip"]))


def balanced_class_weights(y: np.ndarray, n_classes: int = 3) -> dict[int, float]:
    """``n / (n_classes · n_k)`` per class index (1.0 for a class absent from ``y``)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    total = counts.sum()
    return {
        k: float(total / (n_classes * counts[k])) if counts[k] else 1.0 for k in range(n_classes)
    }


def reference_stats(
    rows: np.ndarray, columns: Sequence[str], sample_size: int = 2000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per feature: mean, std, min, max, deciles (PSI bin edges), a sample (KS tests)."""
    rows = np.asarray(rows, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(columns):
        values = rows[:, k]
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"no finite training values for feature {name!r}")
        take = min(sample_size, values.size)
        sample = rng.choice(values, size=take, replace=False) if take < values.size else values
        edges = np.quantile(values, REFERENCE_QUANTILES)
        out[name] = {
            "n": int(values.size),
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "quantiles": list(REFERENCE_QUANTILES),
            "bin_edges": [float(v) for v in edges],
            "sample": [float(v) for v in np.sort(sample)],
        }
    return out


def training_reference(
    rows: np.ndarray,
    ticker_codes: np.ndarray,
    tickers: Sequence[str],
    ts_ns: np.ndarray,
    columns: Sequence[str],
    sample_size: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The bundle's ``reference_stats`` from the train segment's rows (unscaled).

    ``summary``: per feature ``reference_stats`` (mean, std, deciles, a sample for KS), for
    every input. The other keys are the drift monitor's format
    (``drift.reference.reference_stats_from_frame(...).to_dict()``: per time-of-session
    bucket PSI shares and CDFs, autocorrelation; calendar inputs excluded), which
    ``ReferenceStats.from_dict`` reads back.
    """
    out: dict[str, Any] = {"summary": reference_stats(rows, columns, sample_size, seed)}
    frame = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=list(columns), copy=False)
    frame.insert(0, "ticker", np.asarray(tickers, dtype=object)[ticker_codes])
    frame.insert(1, "ts", pd.DatetimeIndex(np.asarray(ts_ns).view("datetime64[ns]"), tz="UTC"))
    return {**reference_stats_from_frame(frame, list(columns)).to_dict(), **out}


# --- the dataset ----------------------------------------------------------------------------
MARKET_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "sigma")


@dataclass(frozen=True)
class HoldoutMarket:
    """Prices and barrier σ of the holdout segment's rows (for backtests)."""

    rows: np.ndarray  # int64, into the dataset's row arrays, in row order
    values: np.ndarray  # float64 (n, 5): MARKET_COLUMNS


@dataclass(frozen=True)
class Samples:
    """The samples of one segment: the row index of each window's last bar, class and t1."""

    end_row: np.ndarray  # int64, into the dataset's row arrays
    y: np.ndarray  # int8 class index (0 down, 1 flat, 2 up)
    t1: np.ndarray  # int64 ns UTC

    def __len__(self) -> int:
        return int(self.end_row.size)

    @classmethod
    def empty(cls) -> Samples:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64))


@dataclass(frozen=True)
class TrainingDataset:
    """Rows (unscaled and scaled), per-segment sample indices, scaler and statistics."""

    feature_spec: FeatureSpec
    label_spec: LabelSpec | None
    window: int
    plan: SplitPlan
    tickers: tuple[str, ...]
    row_ticker: np.ndarray  # int32 code into ``tickers``
    row_ts: np.ndarray  # int64 ns UTC
    rows_raw: np.ndarray  # float32 (n_rows, F): create_features values
    rows_scaled: np.ndarray  # float32 (n_rows, F): scaler applied (NaN rows stay NaN)
    samples: dict[str, Samples]
    scaler: FeatureScaler
    class_weights: dict[int, float]
    reference_stats: dict[str, dict[str, Any]]
    config: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    holdout_market: HoldoutMarket | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.feature_spec.columns

    def window_index(
        self, segment: str, scaled: bool = True, limit: int | None = None, step: int = 1
    ) -> WindowIndex:
        """The input windows of a segment (every ``step``-th of the first ``limit`` samples),
        gathered from the rows only when taken (``models.windows``)."""
        rows = self.rows_scaled if scaled else self.rows_raw
        return WindowIndex(rows, self.samples[segment].end_row[:limit:step], self.window)

    def windows(
        self, segment: str, scaled: bool = True, limit: int | None = None, step: int = 1
    ) -> np.ndarray:
        """(n, window, F) float32 input windows of ``window_index``, materialized: ``window``
        times the memory of their rows, so for small sets (parity checks, tests) only."""
        return self.window_index(segment, scaled, limit, step).materialize()

    def y(self, segment: str, step: int = 1) -> np.ndarray:
        """Class indices (0 down, 1 flat, 2 up) of a segment (every ``step``-th sample)."""
        return self.samples[segment].y[::step]

    def sample_frame(self, segment: str) -> pd.DataFrame:
        """ticker, ts, t1 and label (−1/0/+1) of each sample of a segment."""
        s = self.samples[segment]
        return pd.DataFrame(
            {
                "ticker": np.asarray(self.tickers, dtype=object)[self.row_ticker[s.end_row]],
                "ts": pd.DatetimeIndex(self.row_ts[s.end_row].view("datetime64[ns]"), tz="UTC"),
                "t1": pd.DatetimeIndex(s.t1.view("datetime64[ns]"), tz="UTC"),
                "label": class_to_label(s.y),
            }
        )

    def holdout_bars(self) -> pd.DataFrame | None:
        """ticker, ts, open, high, low, close, sigma of the holdout's bars (None: not kept)."""
        market = self.holdout_market
        if market is None:
            return None
        frame = pd.DataFrame(market.values, columns=list(MARKET_COLUMNS))
        frame.insert(
            0, "ticker", np.asarray(self.tickers, dtype=object)[self.row_ticker[market.rows]]
        )
        frame.insert(
            1, "ts", pd.DatetimeIndex(self.row_ts[market.rows].view("datetime64[ns]"), tz="UTC")
        )
        return frame

    def class_balance(self, segment: str) -> dict[str, int]:
        counts = np.bincount(self.samples[segment].y.astype(np.int64), minlength=3)
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}

    def training_window(self) -> dict[str, str | None]:
        """First and last session the models learned from (train through test)."""
        first = self.plan.sessions.get("train")
        last = self.plan.sessions.get("test") or self.plan.sessions.get("val") or first
        return {
            "first_session": None if first is None else first[0].date().isoformat(),
            "last_session": None if last is None else last[1].date().isoformat(),
        }

    # --- persistence (one .npz file, written atomically) ---------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (.npz) through a temp file and ``os.replace``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "feature_spec": self.feature_spec.to_dict(),
            "label_spec": None if self.label_spec is None else self.label_spec.to_dict(),
            "window": self.window,
            "plan": self.plan.to_dict(),
            "tickers": list(self.tickers),
            "scaler": self.scaler.to_dict(),
            "class_weights": {str(k): v for k, v in self.class_weights.items()},
            "reference_stats": self.reference_stats,
            "config": self.config,
            "stats": self.stats,
        }
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(json.dumps(meta)),
            "row_ticker": self.row_ticker,
            "row_ts": self.row_ts,
            "rows_raw": self.rows_raw,
            "rows_scaled": self.rows_scaled,
        }
        for name, s in self.samples.items():
            arrays[f"{name}__end_row"] = s.end_row
            arrays[f"{name}__y"] = s.y
            arrays[f"{name}__t1"] = s.t1
        if self.holdout_market is not None:
            arrays["market__rows"] = self.holdout_market.rows
            arrays["market__values"] = self.holdout_market.values
        fd, tmp = tempfile.mkstemp(prefix=".dataset-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainingDataset:
        """Read a dataset written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no training dataset at {path}; materialize training_dataset")
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            samples = {
                name: Samples(data[f"{name}__end_row"], data[f"{name}__y"], data[f"{name}__t1"])
                for name in SEGMENTS
                if f"{name}__end_row" in data
            }
            return cls(
                feature_spec=FeatureSpec.from_dict(meta["feature_spec"]),
                label_spec=None
                if meta["label_spec"] is None
                else LabelSpec.from_dict(meta["label_spec"]),
                window=int(meta["window"]),
                plan=SplitPlan.from_dict(meta["plan"]),
                tickers=tuple(meta["tickers"]),
                row_ticker=data["row_ticker"],
                row_ts=data["row_ts"],
                rows_raw=data["rows_raw"],
                rows_scaled=data["rows_scaled"],
                samples=samples,
                scaler=FeatureScaler.from_dict(meta["scaler"]),
                class_weights={int(k): float(v) for k, v in meta["class_weights"].items()},
                reference_stats=meta["reference_stats"],
                config=meta["config"],
                stats=meta["stats"],
                holdout_market=HoldoutMarket(data["market__rows"], data["market__values"])
                if "market__rows" in data
                else None,
            )


def build_dataset(
    frame: pd.DataFrame,
    config: TrainingConfig | None = None,
    *,
    feature_spec: FeatureSpec = FEATURE_SPEC,
    label_spec: LabelSpec | None = None,
    plan: SplitPlan | None = None,
) -> TrainingDataset:
    """Windows, split, purge, embargo, scaler and class weights from labelled feature rows.

    ``frame``: ticker, ts, the ``feature_spec`` columns, ``label`` (nullable), ``t1`` and
    optionally ``warm`` and the ``MARKET_COLUMNS`` (kept for the holdout's bars). ``plan``
    defaults to ``plan_split`` over the sessions that have labels.
    """
    config = config or TrainingConfig()
    columns = list(feature_spec.columns)
    missing = [c for c in ("ticker", "ts", "label", "t1", *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"labelled feature frame lacks columns {missing}")
    if frame.empty:
        raise ValueError("no labelled feature rows to build a dataset from")
    window = int(config.window)

    ts_all = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    ticker_all = frame["ticker"].astype("string")
    codes, names = pd.factorize(ticker_all, sort=True)
    order = np.lexsort((ts_all.array.asi8, codes))
    codes = codes[order].astype(np.int32)
    ts_ns = ts_all.array.asi8[order]
    n = order.size
    new_ticker = np.r_[True, codes[1:] != codes[:-1]]
    if (~new_ticker & (np.r_[1, np.diff(ts_ns)] <= 0)).any():
        raise ValueError("labelled feature rows have duplicate (ticker, ts)")

    x = _ordered_matrix(frame, columns, order)
    warm = (
        frame["warm"].astype("boolean").fillna(False).to_numpy(dtype=bool)[order]
        if "warm" in frame.columns
        else np.ones(n, dtype=bool)
    )
    valid = warm & np.isfinite(x).all(axis=1)

    # Windows of `window` consecutive valid bars of one ticker, ending at each row.
    idx = np.arange(n, dtype=np.int64)
    run_start_here = valid & (new_ticker | ~np.r_[False, valid[:-1]])
    run_start = np.maximum.accumulate(np.where(run_start_here, idx, -1))
    window_ok = valid & (idx - run_start + 1 >= window)

    label = pd.array(frame["label"], dtype="Int64")[order]
    t1 = pd.to_datetime(frame["t1"], utc=True).astype("datetime64[ns, UTC]").array.asi8[order]
    has_label = ~np.asarray(label.isna()) & (t1 != _NAT)
    label_values = np.asarray(label.fillna(0), dtype=np.int64)
    if not np.isin(label_values[has_label], CLASS_ORDER).all():
        raise ValueError("labels must be -1, 0 or +1")

    if plan is None:
        day = pd.DatetimeIndex(ts_ns[has_label].view("datetime64[ns]"), tz="UTC")
        plan = plan_split(
            pd.unique(day.tz_convert(calendar.MARKET_TZ).normalize().tz_localize(None)),
            config.holdout_sessions,
            config.val_fraction,
            config.test_fraction,
        )

    window_start_ts = np.full(n, _NAT, dtype=np.int64)
    window_start_ts[window - 1 :] = ts_ns[: n - window + 1]
    candidate = window_ok & has_label
    embargo_ns = int(config.embargo_minutes) * _MINUTE_NS
    samples: dict[str, Samples] = {}
    stats: dict[str, Any] = {"rows": int(n), "valid_rows": int(valid.sum())}
    for k, name in enumerate(SEGMENTS):
        bounds = plan.bounds(name)
        if bounds is None:
            samples[name] = Samples.empty()
            continue
        start, end = (b.value for b in bounds)
        in_seg = candidate & (ts_ns >= start) & (ts_ns < end)
        purged = in_seg & (t1 >= end)
        embargoed = in_seg & ~purged & (window_start_ts < start + (embargo_ns if k else 0))
        keep = in_seg & ~purged & ~embargoed
        stride = config.train_stride if name == "train" else config.eval_stride
        rows = _stride(np.flatnonzero(keep), codes, stride)
        if name == "train" and rows.size > config.max_train_windows:
            pick = np.linspace(0, rows.size - 1, config.max_train_windows).round().astype(np.int64)
            rows = rows[np.unique(pick)]
        samples[name] = Samples(rows, label_to_class(label_values[rows]), t1[rows])
        stats[name] = {
            "candidates": int(in_seg.sum()),
            "purged": int(purged.sum()),
            "embargoed": int(embargoed.sum()),
            "samples": int(rows.size),
        }
    if len(samples["train"]) == 0 or len(samples["val"]) == 0:
        raise ValueError(
            f"no training or validation windows (need {window} warm bars per window): {stats}"
        )

    train_start, train_end = (b.value for b in plan.bounds("train"))  # type: ignore[union-attr]
    fit_rows = valid & (ts_ns >= train_start) & (ts_ns < train_end)
    fit_x = x[fit_rows]
    scaler = FeatureScaler.fit(fit_x, columns, config.scaler, config.scaler_clip)
    rows_raw = x.astype(np.float32)
    del x  # the float64 rows are not needed past here: the peak holds one copy of them
    reference = training_reference(
        fit_x,
        codes[fit_rows],
        tuple(str(t) for t in names),
        ts_ns[fit_rows],
        columns,
        config.reference_sample,
        config.seed,
    )
    del fit_x
    rows_scaled = scaler.transform(rows_raw)
    rows_scaled[~valid] = np.nan
    stats["scaler_fit_rows"] = int(fit_rows.sum())
    stats["scaler_fit_last_ts"] = pd.Timestamp(int(ts_ns[fit_rows].max()), tz="UTC").isoformat()

    return TrainingDataset(
        feature_spec=feature_spec,
        label_spec=label_spec,
        window=window,
        plan=plan,
        tickers=tuple(str(t) for t in names),
        row_ticker=codes,
        row_ts=ts_ns,
        rows_raw=rows_raw,
        rows_scaled=rows_scaled,
        samples=samples,
        scaler=scaler,
        class_weights=balanced_class_weights(samples["train"].y),
        reference_stats=reference,
        config=config.to_dict(),
        stats=stats,
        holdout_market=_holdout_market(frame, order, ts_ns, plan),
    )


def _ordered_matrix(frame: pd.DataFrame, columns: Sequence[str], order: np.ndarray) -> np.ndarray:
    """The (n, F) float64 matrix of ``columns`` in row ``order``, filled column by column: no
    intermediate frame or unordered copy of the whole matrix (the largest arrays of the build)."""
    x = np.empty((order.size, len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        x[:, j] = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)[order]
    return x


def _holdout_market(
    frame: pd.DataFrame, order: np.ndarray, ts_ns: np.ndarray, plan: SplitPlan
) -> HoldoutMarket | None:
    """The holdout rows' prices and σ, when the frame has them."""
    bounds = plan.bounds("holdout")
    if bounds is None or not set(MARKET_COLUMNS) <= set(frame.columns):
        return None
    start, end = (b.value for b in bounds)
    rows = np.flatnonzero((ts_ns >= start) & (ts_ns < end))
    values = frame[list(MARKET_COLUMNS)].to_numpy(dtype=np.float64)[order][rows]
    return HoldoutMarket(rows.astype(np.int64), values)


def _stride(rows: np.ndarray, codes: np.ndarray, stride: int) -> np.ndarray:
    """Every ``stride``-th row of each ticker (rows are sorted by ticker, then ts)."""
    if stride <= 1 or rows.size == 0:
        return rows
    tick = codes[rows]
    first = np.r_[True, tick[1:] != tick[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(rows.size), 0))
    return rows[(np.arange(rows.size) - group_start) % stride == 0]


def latest_windows(
    features: pd.DataFrame | Mapping[str, Any], columns: Sequence[str], window: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The newest window of each ticker from ``create_features`` rows (unscaled), or from
    its columns (``feature_arrays``, as live scoring passes them).

    Returns (ticker, ts of the newest bar) per ticker and the (n_tickers, window, F) array.
    Raises ValueError naming the tickers with fewer than ``window`` warm finite bars at the end.
    """
    if len(features["ticker"]) == 0:
        return pd.DataFrame(columns=["ticker", "ts"]), np.zeros(
            (0, window, len(columns)), np.float32
        )
    # One gather for all tickers (live scoring calls this every minute: no per-ticker pandas).
    codes, names = pd.factorize(pd.array(features["ticker"], dtype="string"), sort=True)
    ts = pd.DatetimeIndex(features["ts"])
    order = np.lexsort((ts.asi8, codes))
    by_ticker = codes[order]
    last = np.flatnonzero(np.r_[by_ticker[1:] != by_ticker[:-1], True])
    first = np.r_[0, last[:-1] + 1]
    rows = order[np.maximum(last[:, None] + np.arange(1 - window, 1), first[:, None])]
    flat = rows.ravel()  # only the rows of the windows, column by column (no frame take)
    values = np.stack([np.asarray(features[c], dtype=np.float64)[flat] for c in columns], axis=-1)
    values = values.reshape(*rows.shape, len(columns))
    warm = np.asarray(features["warm"], bool) if "warm" in features else np.ones(len(order), bool)
    ok = (
        (last - first + 1 >= window) & warm[rows].all(axis=1) & np.isfinite(values).all(axis=(1, 2))
    )
    tickers = [str(t) for t in names[by_ticker[last]]]
    short = [t for t, good in zip(tickers, ok, strict=True) if not good]
    if short:
        raise ValueError(
            f"tickers {short} lack {window} warm bars at the end: pass at least "
            f"warmup + window bars of history per ticker"
        )
    index = pd.DataFrame({"ticker": tickers, "ts": ts[order[last]]})
    return index, values.astype(np.float32)
