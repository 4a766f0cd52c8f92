"""``champion_model``: challenger vs champion on unseen data → ``model_config.json``.

The asset only wires (principle 1): ``deployment.validate_model.validate_and_deploy`` does the
work. Its metadata records every decision: the comparison table (markdown), the outcome, the
reason, and the champion before and after. The check ``champion_file_valid`` verifies that the
champion named in the config has a file that exists, loads and matches its Keras model; it can
also be run on its own (e.g. after a drift rollback).
"""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from quant_assets.deployment.mlflow_alias import sync_champion_alias
from quant_assets.deployment.registry import ModelRegistry, file_sha256
from quant_assets.deployment.scoring import check_bundle, latest_bundles, load_validation_set
from quant_assets.deployment.validate_model import ValidationRun, validate_and_deploy
from quant_assets.deployment.validation import DecisionRule, decision_summary
from quant_assets.settings import Settings

CHECK_CHAMPION_FILE = "champion_file_valid"
DEFAULT_DATASET = "datasets/training_dataset.npz"  # relative to QUANT_HOME


class ChampionConfig(dg.Config):
    """The decision rule (see deployment.validation) and where the inputs are."""

    margin: float = Field(0.02, description="min macro-F1 (UP/DOWN) gain, absolute")
    confidence: float = Field(0.95, description="min bootstrap P(challenger better)")
    block_length: int = Field(30, description="bootstrap block, in timestamps (≈ label horizon)")
    n_boot: int = 2000
    seed: int = 0
    min_samples: int = 300
    bonferroni: bool = True
    baseline_needs_better_log_loss: bool = Field(
        True, description="first run: also require a lower log-loss than the baseline"
    )
    archs: list[str] = Field(default_factory=lambda: ["lstm", "transformer"])
    dataset_path: str = Field(DEFAULT_DATASET, description="training dataset, relative to home")
    segment: str = Field("holdout", description="the dataset segment used for validation")
    auto_recover: bool = True
    sync_mlflow: bool = True

    def rule(self) -> DecisionRule:
        """The DecisionRule these settings describe."""
        return DecisionRule(
            margin=self.margin,
            confidence=self.confidence,
            block_length=self.block_length,
            n_boot=self.n_boot,
            seed=self.seed,
            min_samples=self.min_samples,
            bonferroni=self.bonferroni,
            baseline_needs_better_log_loss=self.baseline_needs_better_log_loss,
        )


@dg.asset(
    group_name="deployment",
    deps=[dg.AssetKey("lstm_model"), dg.AssetKey("transformer_model")],
    kinds={"tflite", "json"},
    description=(
        "The deployed model: the newest LSTM and Transformer bundles (challengers) and the "
        "champion in model_config.json are scored with their TFLite files on the unseen "
        "holdout sessions; a challenger replaces the champion only with a macro-F1 (UP/DOWN) "
        "gain ≥ margin and ≥ 95 % paired block-bootstrap confidence (first run: it must beat "
        "the majority baseline). Writes model_config.json atomically under a lock and keeps "
        "the MLflow alias 'champion' in step."
    ),
)
def champion_model(
    context: dg.AssetExecutionContext, config: ChampionConfig
) -> dg.MaterializeResult:
    """Validate the challengers against the champion and update model_config.json."""
    settings = Settings()
    registry = ModelRegistry.from_settings(settings)
    vs = load_validation_set(_home_path(settings, config.dataset_path), config.segment)
    challengers = latest_bundles(settings.home / "models", tuple(config.archs))
    context.log.info(
        f"challengers {sorted(challengers)}; validation: {vs.description}; registry {registry.path}"
    )

    def sync() -> Any:
        if not config.sync_mlflow:
            return None
        return sync_champion_alias(registry, tracking_uri=settings.mlflow_tracking_uri)

    run = validate_and_deploy(
        registry,
        vs,
        challengers,
        config.rule(),
        auto_recover=config.auto_recover,
        sync_alias=sync,
    )
    for note in run.notes:
        context.log.warning(note)
    context.log.info(f"{run.action}: {run.decision.reason}")
    return dg.MaterializeResult(
        metadata=_metadata(run, registry),
        data_version=dg.DataVersion(f"{run.champion_after}@{run.revision}"),
    )


def _home_path(settings: Settings, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else settings.home / p


def _metadata(run: ValidationRun, registry: ModelRegistry) -> dict[str, Any]:
    d = run.decision
    alias = run.alias_sync
    summary = decision_summary(d)
    return {
        "decision": dg.MetadataValue.text(run.action),
        "reason": dg.MetadataValue.text(d.reason),
        "champion_before": dg.MetadataValue.text(run.champion_before or "none"),
        "champion_after": dg.MetadataValue.text(run.champion_after or "none"),
        "comparison": dg.MetadataValue.md(d.comparison_table()),
        "validation_set": dg.MetadataValue.text(run.validation),
        "validation_samples": dg.MetadataValue.int(run.n_samples),
        "class_counts": dg.MetadataValue.json(summary["class_counts"]),
        "metrics": dg.MetadataValue.json(summary["metrics"]),
        "bootstrap": dg.MetadataValue.json(summary["comparisons"]),
        "rule": dg.MetadataValue.json(summary["rule"]),
        "notes": dg.MetadataValue.json(run.notes),
        "registry_revision": dg.MetadataValue.int(run.revision),
        "model_config": dg.MetadataValue.path(str(registry.path)),
        "mlflow_alias": dg.MetadataValue.text(
            "not synced" if alias is None else f"{alias.action}: {alias.message}"
        ),
    }


@dg.asset_check(
    asset=champion_model,
    name=CHECK_CHAMPION_FILE,
    description=(
        "The champion named in model_config.json has a TFLite file that exists, matches the "
        "recorded sha256, loads, returns probabilities and agrees with its Keras model "
        "(max |Δp| ≤ 1e-4 on 32 windows)."
    ),
)
def champion_file_valid(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Check the config's champion file (runs after champion_model or on its own)."""
    registry = ModelRegistry.from_settings(Settings())
    status = registry.status()
    if not status.ok or status.config is None:
        return dg.AssetCheckResult(
            passed=False, metadata={"registry": dg.MetadataValue.text(status.message)}
        )
    champion = status.config.champion
    if champion is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"registry": dg.MetadataValue.text("no champion promoted yet")},
        )
    path = registry.resolve(champion.model)
    sha_ok = champion.model.sha256 is None or (
        path.is_file() and file_sha256(path) == champion.model.sha256
    )
    check = check_bundle(registry.home / champion.model.bundle_dir)
    context.log.info(f"{champion.model.name}: {check.message}")
    return dg.AssetCheckResult(
        passed=check.passed and sha_ok,
        metadata={
            "champion": dg.MetadataValue.text(champion.model.name),
            "path": dg.MetadataValue.path(str(path)),
            "exists": dg.MetadataValue.bool(check.exists),
            "loads": dg.MetadataValue.bool(check.loads),
            "sha256_matches": dg.MetadataValue.bool(sha_ok),
            "parity_max_abs_diff": dg.MetadataValue.text(
                "not measured"
                if check.parity_max_abs_diff is None
                else f"{check.parity_max_abs_diff:.3e}"
            ),
            "message": dg.MetadataValue.text(check.message),
            "metrics_at_promotion": dg.MetadataValue.json(dict(champion.metrics)),
        },
    )
