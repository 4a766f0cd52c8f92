"""The plan's ``validate_model.py``: challengers vs champion on unseen data, then the registry.

``validate_and_deploy`` is the whole automated gate, with no Dagster import:

1. Make sure ``model_config.json`` is usable (``recover_from_history`` when it is not and
   ``auto_recover``; an unknown ``schema_version`` is never overwritten automatically).
2. Score the challengers (the newest bundle of each architecture) and the champion named in the
   config with their TFLite files on the same unseen validation set (``scoring``).
3. With a ``BacktestSpec``, every scored model is backtested on the holdout's bars after costs
   (``holdout_value``), and ``decision.decide`` weighs the F1 rules (margin + paired block
   bootstrap; the baseline on the first run) and the net value rule.
4. On ``promote``: ``champion.promote(..., expected_champion=<champion scored>)`` — if
   another process changed the champion meanwhile, nothing is written (``champion_changed``).
5. Sync the MLflow alias (failures are reported, never fatal), promoted or not, so a night
   also repairs an alias a failed sync left behind.

A champion whose bundle cannot be scored (file gone, incompatible features) is reported and the
challengers are held to the first-run standard (they must beat the majority baseline). A model
that a rollback took out (``retired``) is never a challenger again, so a night without a new
bundle of its architecture cannot undo the drift monitor's rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quant_assets.deployment import champion
from quant_assets.deployment.backtest_report import headline_metrics
from quant_assets.deployment.decision import Decision, DecisionRule, decide
from quant_assets.deployment.holdout_value import can_backtest, holdout_backtest, net_value_of
from quant_assets.deployment.model_config import ModelRef
from quant_assets.deployment.outcomes import AliasSyncResult, PromoteResult, RecoveryResult
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.deployment.scoring import ScoredBundle, ValidationSet, score_bundles, unseen_part
from quant_assets.evaluation.backtest import BacktestResult, BacktestSpec
from quant_assets.models.bundle import read_manifest
from quant_assets.models.parity import PredictorLoader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationRun:
    """Everything one validation did (for asset metadata and logs)."""

    decision: Decision
    action: str  # promoted | kept | no_champion | champion_changed
    champion_before: str | None
    champion_after: str | None
    revision: int
    validation: str
    n_samples: int
    scored: dict[str, ScoredBundle]
    backtests: dict[str, BacktestResult] = field(default_factory=dict)
    recovery: RecoveryResult | None = None
    promotion: PromoteResult | None = None
    alias_sync: AliasSyncResult | None = None
    notes: list[str] = field(default_factory=list)


def validate_and_deploy(
    registry: ModelRegistry,
    vs: ValidationSet,
    challengers: Mapping[str, Path],
    rule: DecisionRule | None = None,
    *,
    loader: PredictorLoader | None = None,
    auto_recover: bool = True,
    tracking_uri: str | None = None,
    backtest: BacktestSpec | None = None,
) -> ValidationRun:
    """Run the champion/challenger gate and update the registry (see the module docstring)."""
    rule = rule or DecisionRule()
    notes: list[str] = []
    recovery = None
    status = registry.status()
    if not status.ok:
        if not auto_recover:
            registry.load(check_files=True)  # raises the clear error
        recovery = registry.recover_from_history(f"champion_model found {status.state}")
        notes.append(f"registry recovered ({recovery.outcome}): {recovery.message}")
    cfg = registry.load(allow_first_run=True)
    serving = cfg.champion
    champ_name = serving.model.name if serving else None

    retired = {h.model.name for h in cfg.retired}
    for name in sorted(set(challengers) & retired):
        notes.append(f"{name} was rolled back before: not a challenger again")
    bundles = {
        name: Path(d)
        for name, d in challengers.items()
        if name != champ_name and name not in retired
    }
    if serving is not None:
        bundles = {champ_name: registry.home / serving.model.bundle_dir, **bundles}
    metas: dict[str, dict[str, Any]] = {}
    for name, d in bundles.items():
        try:
            metas[name] = read_manifest(d)
        except (OSError, ValueError) as e:
            notes.append(f"{name}: bundle.json unreadable ({e})")
    unseen = unseen_part(vs, metas)
    if len(unseen) < len(vs):
        notes.append(
            f"dropped {len(vs) - len(unseen)} of {len(vs)} samples that a model trained on"
        )
    scored = score_bundles(bundles, unseen, loader=loader)
    for s in scored.values():
        if not s.ok:
            notes.append(f"{s.name} not scored: {s.error}")

    champ_scored = scored.get(champ_name) if champ_name else None
    reference = None
    if champ_scored is not None and champ_scored.probs is not None:
        reference = (champ_name, champ_scored.probs)
    elif serving is not None:
        notes.append(
            f"champion {champ_name} could not be scored: challengers must beat the majority "
            "baseline instead"
        )
    scored_challengers = {
        n: s.probs for n, s in scored.items() if n != champ_name and s.probs is not None
    }
    backtests = _backtests(unseen, scored, backtest, notes)
    values = {name: net_value_of(result, unseen, rule) for name, result in backtests.items()}
    decision = decide(
        unseen.labels,
        scored_challengers,
        reference,
        rule,
        time_keys=unseen.time_keys,
        values=values,
    )

    action = {"promote": "promoted", "keep": "kept", "no_champion": "no_champion"}[decision.outcome]
    if decision.outcome == "no_champion" and serving is not None:
        action = "kept"  # an unscorable champion is not removed here (recovery handles files)
    promotion = None
    if decision.outcome == "promote" and decision.winner is not None:
        winner = scored[decision.winner]
        promotion = champion.promote(
            registry,
            ModelRef.for_bundle(registry.home, winner.bundle_dir),
            reason=decision.reason,
            metrics=decision.metrics[decision.winner].as_dict()
            | headline_metrics(backtests.get(decision.winner)),
            mlflow_run_id=winner.meta.get("mlflow_run_id"),
            expected_champion=champ_name,
            tracking_uri=tracking_uri,
        )
        if promotion.outcome == "champion_changed":
            action = "champion_changed"
            notes.append(promotion.message)
    after = registry.load(allow_first_run=True)
    alias = (
        promotion.alias_sync
        if promotion is not None and promotion.changed
        else champion.mirror_alias(registry, tracking_uri)
    )
    run = ValidationRun(
        decision=decision,
        action=action,
        champion_before=champ_name,
        champion_after=after.champion.model.name if after.champion else None,
        revision=after.revision,
        validation=unseen.description,
        n_samples=len(unseen),
        scored=scored,
        backtests=backtests,
        recovery=recovery,
        promotion=promotion,
        alias_sync=alias,
        notes=notes,
    )
    log.info("champion validation: %s (%s)", action, decision.reason)
    return run


def _backtests(
    vs: ValidationSet,
    scored: Mapping[str, ScoredBundle],
    spec: BacktestSpec | None,
    notes: list[str],
) -> dict[str, BacktestResult]:
    """Each scored model's holdout backtest (none without a spec or without bars)."""
    if spec is None:
        return {}
    if not can_backtest(vs):
        notes.append("the validation set has no bars: the net value rule is not evaluated")
        return {}
    return {
        name: holdout_backtest(vs, s.probs, spec)
        for name, s in scored.items()
        if s.probs is not None
    }
