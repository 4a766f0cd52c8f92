"""The pool the production stack limits is the one the big-table assets run in."""

from __future__ import annotations

import yaml

from quant_assets.definitions import defs
from quant_assets.defs.partitions import BIG_TABLES_POOL
from quant_assets.production.stack import INSTANCE_YAML, POOL_LIMITS

BIG_TABLES = ("raw_bars", "adjusted_bars", "features", "labels")


def test_the_big_table_assets_share_the_limited_pool() -> None:
    assert set(POOL_LIMITS) == {BIG_TABLES_POOL}
    for key in BIG_TABLES:
        assert defs.resolve_assets_def(key).node_def.pools == {BIG_TABLES_POOL}, key
    others = {a.key.to_user_string() for a in defs.resolve_all_asset_specs()} - set(BIG_TABLES)
    for key in others:
        assert BIG_TABLES_POOL not in defs.resolve_assets_def(key).node_def.pools, key


def test_the_instance_queues_runs_at_run_granularity() -> None:
    config = yaml.safe_load(INSTANCE_YAML.read_text())
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["granularity"] == "run"
    # every connection setting comes from the environment: no secret in the file
    assert config["storage"]["custom"]["class"] == "PooledPostgresStorage"
    db = config["storage"]["custom"]["config"]["postgres_db"]
    assert all(set(value) == {"env"} for value in db.values())
