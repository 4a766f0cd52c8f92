"""The body of one process of the registry concurrency test (importable under spawn)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from quant_assets.deployment.model_config import ModelRef, RegistryError
from quant_assets.deployment.registry import ModelRegistry

_BARRIER: Any = None


def init(barrier: Any) -> None:
    """Pool initializer: every worker waits on ``barrier`` before its first operation."""
    global _BARRIER  # noqa: PLW0603
    _BARRIER = barrier


def run_ops(args: tuple[str, str, list[dict], int, int]) -> dict[str, int]:
    """Random promote / rollback / recover / read operations; counts what happened."""
    config_path, home, refs, seed, n_ops = args
    registry = ModelRegistry(Path(config_path), Path(home), lock_timeout_s=60)
    models = [ModelRef(**r) for r in refs]
    rng = random.Random(seed)
    counts = {"writes": 0, "promoted": 0, "rolled_back": 0, "refused": 0, "read_errors": 0}
    if _BARRIER is not None:  # start together, once every process has imported everything
        _BARRIER.wait(timeout=120)
    for _ in range(n_ops):
        op = rng.random()
        if op < 0.5:
            expected = _current(registry) if rng.random() < 0.5 else None
            kwargs = {"expected_champion": expected} if expected is not None else {}
            r = registry.promote(rng.choice(models), reason=f"seed {seed}", **kwargs)
            counts["promoted" if r.changed else "refused"] += 1
            counts["writes"] += int(r.changed)
        elif op < 0.9:
            r = registry.rollback(f"drift seen by seed {seed}")
            counts["rolled_back" if r.changed else "refused"] += 1
            counts["writes"] += int(r.changed)
            if r.outcome == "registry_unreadable":
                counts["read_errors"] += 1
        else:
            res = registry.recover_from_history("periodic check")
            counts["writes"] += int(res.outcome != "healthy")
        try:  # lock-free readers must never see a torn or invalid file
            registry.load(allow_first_run=True, check_files=True)
        except RegistryError:
            counts["read_errors"] += 1
    return counts


def _current(registry: ModelRegistry) -> str | None:
    champion = registry.champion()
    return champion.model.name if champion else None
