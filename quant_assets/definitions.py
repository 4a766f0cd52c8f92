"""The one ``Definitions`` object Dagster loads (``dagster dev`` / ``dg dev`` in the repo root)."""

from __future__ import annotations

import dagster as dg

from quant_assets.defs.corporate_actions import (
    adjusted_bars,
    adjusted_bars_rebuild_sensor,
    corporate_actions,
    premarket_corporate_actions_job,
    premarket_corporate_actions_schedule,
    rebuild_adjusted_bars_job,
)
from quant_assets.defs.deployment import (
    champion_file_valid,
    champion_model,
    champion_reload_sensor,
    drift_rollback_sensor,
    rollback_job,
)
from quant_assets.defs.evaluation import evaluate_job, evaluation_assets
from quant_assets.defs.features import daily_tables_job, features_and_labels
from quant_assets.defs.ingestion import (
    after_close_backfill_schedule,
    gap_backfill_job,
    gap_backfill_sensor,
    ingest_raw_bars_job,
    raw_bars,
)
from quant_assets.defs.monitoring import (
    drift_report,
    live_monitoring_job,
    live_monitoring_schedule,
    live_predictions,
)
from quant_assets.defs.partitions import warn_if_grid_too_large
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource, MlflowResource
from quant_assets.defs.training import nightly_job, nightly_retraining_schedule, training_assets
from quant_assets.settings import get_settings

# Every step reads and writes whole tables and most jobs are a chain, so one process per run is
# the default: a step process would first import TensorFlow and these definitions again
# (15 s a step on 2 cores). QUANT_STEP_EXECUTOR=multiprocess runs independent steps in parallel.
EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}

defs = dg.Definitions(
    executor=EXECUTORS[get_settings().step_executor],
    assets=[
        raw_bars,
        corporate_actions,
        adjusted_bars,
        features_and_labels,
        *training_assets,
        champion_model,
        live_predictions,
        drift_report,
        *evaluation_assets,
    ],
    asset_checks=[champion_file_valid],
    jobs=[
        ingest_raw_bars_job,
        daily_tables_job,
        premarket_corporate_actions_job,
        rebuild_adjusted_bars_job,
        nightly_job,
        live_monitoring_job,
        rollback_job,
        gap_backfill_job,
        evaluate_job,
    ],
    schedules=[
        premarket_corporate_actions_schedule,
        nightly_retraining_schedule,
        live_monitoring_schedule,
        after_close_backfill_schedule,
    ],
    sensors=[
        gap_backfill_sensor,
        adjusted_bars_rebuild_sensor,
        drift_rollback_sensor,
        champion_reload_sensor,
    ],
    resources={
        "database": DatabaseResource(),
        "market": MarketSourceResource.from_settings(),
        "mlflow": MlflowResource(),
    },
)
# Dagster advises ≤ ~100k partitions per asset: say so when the day × ticker grid is past it.
warn_if_grid_too_large()
