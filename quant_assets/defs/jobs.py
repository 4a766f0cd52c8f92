"""Jobs over the asset graph."""

import dagster as dg

from quant_assets.defs.assets.features import features, labels
from quant_assets.defs.assets.raw_bars import raw_bars

ingest_raw_bars_job = dg.define_asset_job(
    "ingest_raw_bars",
    selection=dg.AssetSelection.assets(raw_bars),
    description="Fetch and store raw 1-minute bars for a range of session × ticker partitions.",
)

daily_tables_job = dg.define_asset_job(
    "daily_tables",
    selection=dg.AssetSelection.assets("adjusted_bars", features, labels),
    description="Adjusted bars, features and labels for a range of session × ticker partitions.",
)
