"""The live path on the synthetic market with a planted regime shift (issue 8, end to end).

Scenario (SQLite, built once per module, ~15 s): 5 tickers, sessions from 2026-03-02; the
bundles lstm_v1 and lstm_v2 (tiny real LSTMs, TFLite) are trained on sessions 0-11 and promoted
in that order (champion lstm_v2, previous stable lstm_v1). Sessions 12-16 are quiet; in session
17 a 5x volatility regime starts at 12:07 New York (157 minutes after the open, off the
10-minute grid).

* The five quiet sessions run through the pure core (``replay``, the same ``evaluate_window``
  and ``advance`` the asset calls) on the champion's real TFLite predictions: 195 evaluations
  through Dagster would take ~3 minutes on two busy cores.
* The whole shift session (09:40 … 16:00, every 10 minutes) runs through the real Dagster
  path: ``live_predictions`` + ``drift_report`` materialized with ``as_of`` = the simulated
  time, ``drift_rollback_sensor`` ticked after each report (cursor carried), its RunRequest
  executed as ``rollback_job``, then ``champion_reload_sensor`` ticked on the champion change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG

from quant_assets.corporate_actions.adjusted_store import read_adjusted_bars, rebuild_adjusted_bars
from quant_assets.corporate_actions.ledger import fetch_corporate_actions
from quant_assets.defs.deployment import (
    champion_reload_sensor,
    drift_rollback_sensor,
    rollback_job,
)
from quant_assets.defs.monitoring import drift_report, live_predictions
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.deployment.champion import NO_CHAMPION
from quant_assets.deployment.model_config import ModelRef
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.drift import replay
from quant_assets.drift.reference import ConceptBaseline, ReferenceStats
from quant_assets.drift.thresholds import DriftThresholds
from quant_assets.ingestion.sessions import ingest_sessions
from quant_assets.labels import LabelSpec
from quant_assets.market import calendar
from quant_assets.market.synthetic import SyntheticConfig, SyntheticMarket
from quant_assets.models.bundle import load_bundle
from quant_assets.models.inference import Predictor
from quant_assets.monitoring.drift_monitor import score_range
from quant_assets.settings import Settings
from quant_assets.storage.database import dispose_engines, get_engine, read_from_db

log = logging.getLogger(__name__)

TICKERS = ("T00", "T01", "T02", "T03", "T04")
FIRST = "2026-03-02"
N_TRAIN = 12  # sessions 0..11: the bundles' training data (the first one is feature warm-up)
N_QUIET = 5  # sessions 12..16: quiet live sessions
SHIFT_MINUTE = 157  # after the open of session 17: 12:07 New York
VOL_MULTIPLIER = 5.0


@dataclass(frozen=True)
class Scenario:
    settings: Settings
    days: list[pd.Timestamp]
    shift: pd.Timestamp

    @property
    def shift_day(self) -> pd.Timestamp:
        return self.days[N_TRAIN + N_QUIET]

    @property
    def quiet_days(self) -> list[pd.Timestamp]:
        return self.days[N_TRAIN : N_TRAIN + N_QUIET]


def build_scenario(home: Path) -> Scenario:
    """Fill the database from the synthetic market and train + promote lstm_v1, lstm_v2."""
    from quant_assets.models.config import TrainingConfig
    from quant_assets.models.data import labelled_features_from_bars
    from quant_assets.models.dataset import build_dataset
    from quant_assets.models.training import train_and_bundle

    days = list(calendar.sessions(FIRST, "2026-12-31")[: N_TRAIN + N_QUIET + 1])
    shift = calendar.session_bounds(days[-1])[0] + pd.Timedelta(minutes=SHIFT_MINUTE)
    market = SyntheticMarket(
        SyntheticConfig(
            seed=7,
            tickers=TICKERS,
            start=str(days[0].date()),
            end=str(days[-1].date()),
            corporate_actions=False,
            regime_shift_at=shift,
            regime_vol_multiplier=VOL_MULTIPLIER,
        )
    )
    settings = Settings(home=home, tickers=TICKERS, _env_file=None)
    engine = get_engine(settings)
    for ticker in TICKERS:
        ingest_sessions(market, engine, ticker, days)
    fetch_corporate_actions(list(TICKERS), market, engine)
    rebuild_adjusted_bars(engine, list(TICKERS))

    start = calendar.session_bounds(days[0])[0]
    end = calendar.session_bounds(days[N_TRAIN - 1])[1]
    bars = read_adjusted_bars(engine, list(TICKERS), start, end)
    frame = labelled_features_from_bars(bars[["ticker", "ts", "open", "high", "low", "close",
                                              "volume"]])  # fmt: skip
    config = TrainingConfig(
        window=12,
        sessions=N_TRAIN - 1,
        holdout_sessions=1,
        val_fraction=0.35,  # ~4 sessions: a concept baseline that spans days, not one morning
        test_fraction=0.1,
        epochs=1,
        lstm_units=8,
        lstm_dense=8,
        parity_windows=32,
    )
    dataset = build_dataset(frame, config, label_spec=LabelSpec())
    registry = ModelRegistry.from_settings(settings)
    for _ in range(2):
        report = train_and_bundle("lstm", dataset, config, home / "models")
        registry.promote(ModelRef.for_bundle(home, report.bundle.path), reason="test setup")
    return Scenario(settings, days, shift)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    home = tmp_path_factory.mktemp("monitoring") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUANT_HOME", str(home))
        mp.setenv("QUANT_TICKERS", ",".join(TICKERS))
        for name in ("QUANT_DATABASE_URL", "DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME"):
            mp.delenv(name, raising=False)
        yield build_scenario(home)
        dispose_engines()


def resources() -> dict[str, object]:
    return {"database": DatabaseResource(), "market": MarketSourceResource(tickers=list(TICKERS))}


def evaluate(instance: dg.DagsterInstance, at: pd.Timestamp) -> dict[str, object]:
    """One live_monitoring run at simulated time ``at``; drift_report's metadata."""
    config = {"config": {"as_of": at.isoformat()}}
    result = dg.materialize(
        [live_predictions, drift_report],
        instance=instance,
        resources=resources(),
        run_config={"ops": {"live_predictions": config, "drift_report": config}},
        tags={RUN_KEY_TAG: f"live-{at.isoformat()}"},
    )
    assert result.success
    meta = result.asset_materializations_for_node("drift_report")[0].metadata
    return {k: v.value for k, v in meta.items() if k != "report"}


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None):
    """One evaluation of ``sensor`` as the daemon runs it (run requests, skip, new cursor)."""
    from quant_assets.definitions import defs

    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor.evaluate_tick(context)


def champion_name(settings: Settings) -> str | None:
    champion = ModelRegistry.from_settings(settings).champion()
    return None if champion is None else champion.model.name


def quiet_replay(scenario: Scenario):
    """The quiet sessions through the pure core, on the champion's real TFLite predictions."""
    settings = scenario.settings
    bundle_dir = ModelRegistry.from_settings(settings).bundle_path(
        ModelRegistry.from_settings(settings).champion().model  # type: ignore[union-attr]
    )
    bundle = load_bundle(bundle_dir)
    predictor = Predictor.load(bundle_dir)
    engine = get_engine(settings)
    first, last = scenario.quiet_days[0], scenario.quiet_days[-1]
    history = calendar.session_before(first, 2)
    bars = read_adjusted_bars(
        engine, list(TICKERS), calendar.session_bounds(history)[0], calendar.session_bounds(last)[1]
    )[["ticker", "ts", "open", "high", "low", "close", "volume"]]
    start, end = calendar.session_bounds(first)[0], calendar.session_bounds(last)[1]
    features, scored = score_range(predictor, bars, start, end)
    window = features.merge(scored, on=["ticker", "ts"], how="inner")
    probs = window[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    reference = ReferenceStats.from_dict(bundle.reference_stats)
    baseline = ConceptBaseline.from_dict(bundle.validation_baseline)
    return replay(window, reference, DriftThresholds(), probs, baseline), len(features), len(window)


@pytest.mark.slow
def test_planted_shift_through_the_live_path(scenario: Scenario) -> None:
    settings = scenario.settings
    th = DriftThresholds()
    assert champion_name(settings) == "lstm_v2"

    # 1. five quiet sessions (pure core, real TFLite predictions): no alarm
    steps, n_features, n_scored = quiet_replay(scenario)
    assert n_scored >= 0.95 * n_features
    sessions = {calendar.session_of(s.at - pd.Timedelta(minutes=1)) for s in steps}
    assert len(sessions) == N_QUIET
    levels = pd.Series([s.report.level for s in steps])
    log.info(f"quiet: {len(steps)} evaluations over {len(sessions)} sessions, "
          f"levels {levels.value_counts(dropna=False).to_dict()}")  # fmt: skip
    assert (levels == "severe").sum() == 0
    assert not any(s.decision.rollback for s in steps)
    assert steps[-1].decision.state.consecutive_severe == 0 and steps[-1].decision.state.armed

    # 2. the shift session through Dagster: assets, drift sensor, rollback job, reload sensor
    open_, close = calendar.session_bounds(scenario.shift_day)
    times = pd.date_range(open_ + pd.Timedelta(minutes=10), close, freq="10min")
    cursor: str | None = None
    records, rollback_keys, reloads = [], [], []
    with dg.instance_for_test() as instance:
        for at in times:
            meta = evaluate(instance, at)
            data = tick(drift_rollback_sensor, instance, cursor)
            assert data.cursor is not None and data.cursor != cursor  # one new event each
            cursor = data.cursor
            records.append({"at": at, **meta, "champion_after": None})
            for request in data.run_requests or []:
                rollback_keys.append(request.run_key)
                result = rollback_job.execute_in_process(
                    run_config=request.run_config,
                    instance=instance,
                    tags={**request.tags, RUN_KEY_TAG: request.run_key},
                )
                assert result.success
                reload = tick(champion_reload_sensor, instance, None)
                assert reload.run_requests and len(reload.run_requests) == 1, reload.skip_message
                reloads.append(reload.run_requests[0])
            records[-1]["champion_after"] = champion_name(settings)
        # The champion_model event is still the newest, but its model already scores: no run.
        again = tick(champion_reload_sensor, instance, None)
        assert not again.run_requests and "already scores" in (again.skip_message or "")
    frame = pd.DataFrame(records)
    before, after = frame[frame["at"] <= scenario.shift], frame[frame["at"] > scenario.shift]
    log.info(frame[["at", "model", "level", "rollback", "champion_after"]].to_string())

    # no alarm on the shift session's morning either (15 evaluations)
    assert len(before) == 15 and not (before["level"] == "severe").any()
    assert not before["rollback"].any()
    # found within 30 minutes
    severe = after[after["level"] == "severe"]
    first_severe = (severe["at"].iloc[0] - scenario.shift).total_seconds() / 60
    log.info(f"first severe {first_severe:.0f} min after the shift")
    assert first_severe <= 30
    # exactly one rollback, after K consecutive severe evaluations, acted on once
    assert int(frame["rollback"].sum()) == 1 and len(rollback_keys) == 1
    rolled = after[after["rollback"]].iloc[0]
    assert rollback_keys == [f"drift-rollback-lstm_v2-{rolled['evaluated_at']}"]
    streak = frame[frame["at"] <= rolled["at"]].tail(th.persistence)
    assert (streak["level"] == "severe").all()  # K consecutive severe evaluations before it
    log.info(f"rollback {(rolled['at'] - scenario.shift).total_seconds() / 60:.0f} min after")
    # afterwards the previous champion is served and evaluated; still drifted but latched
    assert champion_name(settings) == "lstm_v1"
    assert reloads[0].tags["quant/champion"] == "lstm_v1"
    assert reloads[0].asset_selection == [dg.AssetKey("live_predictions")]
    later = after[after["at"] > rolled["at"]]
    assert len(later) >= 15 and set(later["model"]) == {"lstm_v1"}
    assert (later["level"] == "severe").sum() >= 5  # the regime persists: latched, no flapping
    stored = read_from_db("SELECT * FROM drift_reports", get_engine(settings))
    assert len(stored) == len(times) and int(stored["rollback"].astype(bool).sum()) == 1
    last = json.loads(stored.sort_values("evaluated_at")["decision"].iloc[-1])
    assert last["state"]["rollbacks"] == 1 and last["state"]["armed"] is False


def test_without_a_champion_the_live_path_skips_cleanly(quant_env: Settings) -> None:
    """No model_config.json yet: the run succeeds, nothing is materialized, and the reason is
    in the run's log and on the asset (an observation)."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [live_predictions, drift_report], instance=instance, resources=resources()
        )
        assert result.success
        assert not result.get_asset_materialization_events()
        skipped = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"]
        assert skipped == ["drift_report"]
        observed = instance.fetch_observations(dg.AssetKey("live_predictions"), limit=1)
        assert observed.records[0].asset_observation.metadata["skipped"].value == NO_CHAMPION
        warnings = [
            e.message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING
        ]
        assert NO_CHAMPION in warnings
