"""Many processes promoting and rolling back at once leave a valid, consistent registry."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from quant_assets.deployment.registry import ModelRegistry
from quant_assets.settings import Settings
from quant_assets_tests.deployment.concurrency_worker import init, run_ops
from quant_assets_tests.deployment.helpers import make_model_file

PROCESSES = 8
OPS = 20


def test_concurrent_promote_and_rollback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    refs = [make_model_file(home, arch, v) for arch in ("lstm", "transformer") for v in (1, 2, 3)]
    ref_dicts = [r.model_dump() for r in refs]
    args = [(str(registry.path), str(home), ref_dicts, seed, OPS) for seed in range(PROCESSES)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)  # the race starts once every process is up
    with ctx.Pool(PROCESSES, initializer=init, initargs=(barrier,)) as pool:
        results = pool.map(run_ops, args, chunksize=1)

    writes = sum(r["writes"] for r in results)
    assert sum(r["read_errors"] for r in results) == 0
    assert sum(r["promoted"] for r in results) > 0 and sum(r["rolled_back"] for r in results) > 0

    # The file is valid JSON, passes the schema and every invariant, and names existing files.
    raw = json.loads(registry.path.read_text())
    cfg = registry.load(check_files=True)
    assert raw["revision"] == cfg.revision == writes
    assert [c.seq for c in cfg.changes] == list(range(1, writes + 1))
    for a, b in zip(cfg.changes, cfg.changes[1:], strict=False):
        assert b.from_model == a.to_model
    named = ([cfg.champion.model] if cfg.champion else []) + [h.model for h in cfg.history]
    assert all(registry.exists(m) for m in named)
    assert len({m.name for m in named}) == len(named)

    # The journal holds exactly one valid snapshot per write, and its chain replays.
    snapshots = registry.read_journal()
    assert sorted(s.revision for s in snapshots) == list(range(1, writes + 1))
    by_rev = {s.revision: s for s in snapshots}
    for rev in range(2, writes + 1):
        prev = by_rev[rev - 1].champion
        assert by_rev[rev].changes[-1].from_model == (prev.model.name if prev else None)
    assert by_rev[writes] == cfg
    assert list(registry.path.parent.glob("*.tmp")) == []
