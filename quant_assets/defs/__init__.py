"""The Dagster layer: assets, checks, jobs, sensors and schedules wired to the pure core."""

import warnings

import dagster as dg

# The partitioned table assets run a backfill as one run (BackfillPolicy.single_run) by design;
# Dagster marks the parameter beta and would say so once per asset at every start-up.
warnings.filterwarnings(
    "ignore",
    message=r"Parameter `backfill_policy` .* is currently in beta",
    category=dg.BetaWarning,
)
