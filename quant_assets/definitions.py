"""The one ``Definitions`` object Dagster loads (``dagster dev`` / ``dg dev`` in the repo root)."""

from __future__ import annotations

import dagster as dg

from quant_assets.defs.assets.corporate_actions import (
    adjusted_bars,
    adjusted_bars_rebuild_sensor,
    corporate_actions,
    premarket_corporate_actions_job,
    premarket_corporate_actions_schedule,
    rebuild_adjusted_bars_job,
)
from quant_assets.defs.assets.features import features, labels
from quant_assets.defs.assets.raw_bars import raw_bars
from quant_assets.defs.jobs import daily_tables_job, ingest_raw_bars_job
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource
from quant_assets.defs.sensors import gap_backfill_sensor

defs = dg.Definitions(
    assets=[raw_bars, corporate_actions, adjusted_bars, features, labels],
    jobs=[
        ingest_raw_bars_job,
        daily_tables_job,
        premarket_corporate_actions_job,
        rebuild_adjusted_bars_job,
    ],
    schedules=[premarket_corporate_actions_schedule],
    sensors=[gap_backfill_sensor, adjusted_bars_rebuild_sensor],
    resources={
        "database": DatabaseResource(),
        "market": MarketSourceResource.from_settings(),
    },
)
