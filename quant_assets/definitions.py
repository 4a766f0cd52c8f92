"""The one ``Definitions`` object Dagster loads (``dagster dev`` / ``dg dev`` in the repo root)."""

from __future__ import annotations

import dagster as dg

from quant_assets.defs.assets.raw_bars import raw_bars
from quant_assets.defs.jobs import ingest_raw_bars_job
from quant_assets.defs.resources import DatabaseResource, MarketSourceResource

defs = dg.Definitions(
    assets=[raw_bars],
    jobs=[ingest_raw_bars_job],
    resources={
        "database": DatabaseResource(),
        "market": MarketSourceResource.from_settings(),
    },
)
