"""``quant registry …``: inspect and repair ``model_config.json`` from the command line.

``quant_assets.cli`` adds these with ``add_registry_parser`` and runs them with
``run_registry_command``. Sub-commands: ``status`` (exit 1 when unusable),
``recover [--force] [--allow-empty]``, ``rollback --reason TEXT``, ``promote MODEL --reason
TEXT`` (a deliberate manual promotion of a bundle that passes its parity check), ``sync-mlflow``,
``show`` (print the file); ``recover``, ``rollback`` and ``promote`` take ``--no-mlflow`` to
leave the MLflow alias alone.
"""

from __future__ import annotations

import argparse
import sys

from quant_assets.deployment import champion
from quant_assets.deployment.mlflow_alias import sync_champion_alias
from quant_assets.deployment.model_config import RegistryError
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.settings import Settings


def add_registry_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``registry`` and its sub-commands to a ``quant`` sub-parser set."""
    p = sub.add_parser("registry", help="inspect or repair model_config.json")
    rs = p.add_subparsers(dest="registry_command", required=True)
    rs.add_parser("status", help="health of model_config.json (exit 1 when unusable)")
    rs.add_parser("show", help="print model_config.json")
    rec = rs.add_parser("recover", help="restore the newest valid snapshot from the journal")
    rec.add_argument("--force", action="store_true", help="also replace an unknown version")
    rec.add_argument(
        "--allow-empty", action="store_true", help="start empty when no snapshot is valid"
    )
    rec.add_argument("--reason", default="manual recovery (quant registry recover)")
    rb = rs.add_parser("rollback", help="switch to the previous stable champion")
    rb.add_argument("--reason", required=True)
    pr = rs.add_parser(
        "promote", help="make a model bundle the champion by hand (logged as manual_promote)"
    )
    pr.add_argument("model", help="bundle name under QUANT_HOME/models, e.g. lstm_v3")
    pr.add_argument("--reason", required=True)
    for q in (rec, rb, pr):
        q.add_argument("--no-mlflow", action="store_true", help="do not sync the MLflow alias")
    rs.add_parser("sync-mlflow", help="point the MLflow alias 'champion' at the config's champion")
    return p


def run_registry_command(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run a parsed ``registry`` command; returns the exit code."""
    s = settings or Settings()
    registry = ModelRegistry.from_settings(s)
    cmd = args.registry_command
    try:
        if cmd == "status":
            st = registry.status()
            print(f"{registry.path}: {st.state}: {st.message}")
            return 0 if st.ok else 1
        if cmd == "show":
            print(registry.path.read_text(encoding="utf-8"), end="")
            return 0
        if cmd == "recover":
            r = champion.recover(
                registry,
                args.reason,
                force=args.force,
                allow_empty=args.allow_empty,
                tracking_uri=None if args.no_mlflow else s.mlflow_tracking_uri,
            )
            print(f"{r.outcome}: {r.message} (champion {r.champion}, revision {r.revision})")
            return 0
        if cmd == "rollback":
            rb = champion.rollback(
                registry,
                args.reason,
                tracking_uri=None if args.no_mlflow else s.mlflow_tracking_uri,
            )
            print(f"{rb.outcome}: {rb.message}")
            return 0 if rb.outcome in ("rolled_back", "no_previous_version") else 1
        if cmd == "promote":
            pm = champion.promote_manually(
                registry,
                s.models_dir / args.model,
                reason=args.reason,
                tracking_uri=None if args.no_mlflow else s.mlflow_tracking_uri,
            )
            print(f"{pm.outcome}: {pm.message}")
            return 0
        if cmd == "sync-mlflow":
            a = sync_champion_alias(registry, tracking_uri=s.mlflow_tracking_uri)
            print(f"{a.action}: {a.message}")
            return 0 if a.ok else 1
    except (RegistryError, FileNotFoundError) as e:
        print(str(e), file=sys.stderr)
        return 1
    return 2
