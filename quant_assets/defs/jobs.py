"""Jobs over the asset graph."""

from __future__ import annotations

import dagster as dg

from quant_assets.defs.assets.raw_bars import raw_bars

ingest_raw_bars_job = dg.define_asset_job(
    "ingest_raw_bars",
    selection=dg.AssetSelection.assets(raw_bars),
    description="Fetch and store raw 1-minute bars for a range of session × ticker partitions.",
)
