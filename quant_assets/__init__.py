"""quant_assets: Dagster assets from 1-minute bars to a deployed, drift-watched TFLite model."""
