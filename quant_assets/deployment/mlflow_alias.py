"""Keep the MLflow model-registry alias ``champion`` in step with ``model_config.json``.

``model_config.json`` is the source of truth; MLflow mirrors it for people and tools browsing
the registry. Stages are deprecated in MLflow 3, so only aliases are used; the registry keeps
no alias history, which is why the history lives in ``model_config.json``. Two aliases:

* ``quant-champion@champion`` (``tracking.CHAMPION_MODEL``): one URI that always names the
  deployed model whatever its architecture. Each champion is one version of it, found by its
  tag ``quant_model = {arch}_v{N}`` or created from the training run's registered version
  (same source and run id) or, failing that, from the bundle folder.
* ``quant-{arch}@champion`` on the version the training asset registered for that bundle
  (models ``quant-lstm`` / ``quant-transformer``, version tag ``bundle = {arch}_v{N}``; names in
  ``tracking``); the alias is removed from the other architectures' models.

Ordering: ``sync_champion_alias`` takes its own lock (``model_config.json.mlflow.lock``, never
the config lock) and reads the config *inside* it, so when several processes change the
champion at once, the last sync to run sets the aliases from the newest config. It never
raises and never blocks a config write: an unreachable or failing MLflow gives ``ok=False``
and a logged warning; the next successful sync (``champion_model``, ``promote``/``rollback``
or ``quant registry sync-mlflow``) repairs the aliases.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

from quant_assets.deployment.model_config import Deployment, RegistryError
from quant_assets.deployment.outcomes import AliasSyncResult
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.models.bundle import ARCHS
from quant_assets.tracking import (
    BUNDLE_TAG,
    CHAMPION_ALIAS,
    CHAMPION_MODEL,
    MODEL_PREFIX,
    MODEL_TAG,
    registered_model_name,
    safe_uri,
    tracking_client,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def sync_champion_alias(
    registry: ModelRegistry,
    *,
    tracking_uri: str,
    registered_model: str = CHAMPION_MODEL,
    arch_model_prefix: str = MODEL_PREFIX,
    lock_timeout_s: float = 30.0,
    client: MlflowClient | None = None,
) -> AliasSyncResult:
    """Point the ``champion`` aliases at the config's champion (delete them if none)."""
    lock = FileLock(
        str(registry.path.with_name(registry.path.name + ".mlflow.lock")), timeout=lock_timeout_s
    )
    try:
        with lock:
            try:
                cfg = registry.load()
            except RegistryError as e:
                return _failed(None, f"config unreadable, alias left as is: {e}")
            name = cfg.champion.model.name if cfg.champion else None
            try:
                mlflow_client = client or tracking_client(tracking_uri)
                result = _sync(
                    mlflow_client, registry, cfg.champion, registered_model, cfg.revision
                )
            except Exception as e:  # MLflow down, misconfigured, … never fatal here
                return _failed(
                    name, f"MLflow at {safe_uri(tracking_uri)} failed: {type(e).__name__}: {e}"
                )
            try:
                arch_version = _sync_arch_models(mlflow_client, cfg.champion, arch_model_prefix)
            except Exception as e:
                log.warning("per-architecture alias %r not synced: %s", CHAMPION_ALIAS, e)
                arch_version = None
            return AliasSyncResult(
                result.ok,
                result.action,
                result.model,
                result.model_version,
                result.message,
                arch_version,
            )
    except LockTimeout:
        return _failed(None, f"another process held {lock.lock_file} for {lock_timeout_s} s")


def _failed(model: str | None, message: str) -> AliasSyncResult:
    log.warning("MLflow alias %r not synced: %s", CHAMPION_ALIAS, message)
    return AliasSyncResult(False, "failed", model, None, message)


def _sync(
    client: MlflowClient,
    registry: ModelRegistry,
    champion: Deployment | None,
    registered_model: str,
    revision: int,
) -> AliasSyncResult:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(registered_model)
    except MlflowException:
        if champion is None:
            return AliasSyncResult(True, "absent", None, None, "no champion, no registered model")
        with contextlib.suppress(MlflowException):  # created meanwhile elsewhere
            client.create_registered_model(
                registered_model,
                description="The deployed direction classifier; alias 'champion' mirrors "
                "model_config.json (quant_assets.deployment).",
            )
    current = _alias_version(client, registered_model)
    if champion is None:
        if current is None:
            return AliasSyncResult(True, "absent", None, None, "no champion, no alias")
        client.delete_registered_model_alias(registered_model, CHAMPION_ALIAS)
        client.set_registered_model_tag(registered_model, "config_revision", str(revision))
        return AliasSyncResult(True, "deleted", None, None, f"alias removed (was v{current})")
    version = _version_for(client, registry, champion, registered_model)
    name = champion.model.name
    if current == version:
        return AliasSyncResult(
            True,
            "unchanged",
            name,
            version,
            f"{registered_model}@{CHAMPION_ALIAS} already v{version} ({name})",
        )
    client.set_registered_model_alias(registered_model, CHAMPION_ALIAS, version)
    client.set_registered_model_tag(registered_model, "config_revision", str(revision))
    log.info("MLflow %s@%s -> v%s (%s)", registered_model, CHAMPION_ALIAS, version, name)
    return AliasSyncResult(
        True, "set", name, version, f"{registered_model}@{CHAMPION_ALIAS} -> v{version} ({name})"
    )


def _alias_version(client: MlflowClient, registered_model: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(registered_model, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def _tagged_version(client: MlflowClient, registered_model: str, tag: str, value: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(
            f"name = '{registered_model}' and tags.{tag} = '{value}'"
        )
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def _version_for(
    client: MlflowClient, registry: ModelRegistry, champion: Deployment, registered_model: str
) -> str:
    ref = champion.model
    found = _tagged_version(client, registered_model, MODEL_TAG, ref.name)
    if found is not None:
        return str(found.version)
    tags = {MODEL_TAG: ref.name, "arch": ref.arch, "version": str(ref.version), "path": ref.path}
    if ref.sha256:
        tags["sha256"] = ref.sha256
    trained = _tagged_version(client, registered_model_name(ref.arch), BUNDLE_TAG, ref.name)
    kwargs: dict[str, Any] = {"tags": tags, "description": champion.promoted_reason[:1000]}
    if trained is not None:  # the training run's registered artifacts
        tags["trained_as"] = f"{registered_model_name(ref.arch)} v{trained.version}"
        attempts = [{"source": trained.source, "run_id": trained.run_id}]
    else:
        attempts = []
    source = str(registry.bundle_path(ref).resolve())
    if champion.mlflow_run_id:
        attempts.append({"source": source, "run_id": champion.mlflow_run_id})
    attempts.append({"source": source})
    error: Exception | None = None
    for extra in attempts:
        try:
            return str(client.create_model_version(registered_model, **kwargs, **extra).version)
        except Exception as e:  # e.g. the run lives in another tracking store
            error = e
            log.info("registering %s with %s failed: %s", ref.name, extra, e)
    assert error is not None
    raise error


def _sync_arch_models(client: MlflowClient, champion: Deployment | None, prefix: str) -> str | None:
    """Alias the champion's version in ``{prefix}-{arch}``; remove the alias elsewhere."""
    from mlflow.exceptions import MlflowException

    archs = set(ARCHS) | ({champion.model.arch} if champion else set())
    aliased: str | None = None
    for arch in sorted(archs):
        name = registered_model_name(arch, prefix)
        current = _alias_version(client, name)
        target = None
        if champion is not None and champion.model.arch == arch:
            found = _tagged_version(client, name, BUNDLE_TAG, champion.model.name)
            target = None if found is None else str(found.version)
        if target is not None and target != current:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, target)
        elif target is None and current is not None:
            with contextlib.suppress(MlflowException):
                client.delete_registered_model_alias(name, CHAMPION_ALIAS)
        if target is not None:
            aliased = f"{name} v{target}"
    return aliased
