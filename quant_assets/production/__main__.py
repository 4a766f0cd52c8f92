"""``python -m quant_assets.production start|stop|status [--state-dir DIR]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from quant_assets.production.stack import SERVER_URL_ENV, ProductionStack, StackError


def default_state_dir() -> Path:
    """QUANT_PRODUCTION_DIR, else QUANT_HOME/production, else ./.quant/production."""
    if os.environ.get("QUANT_PRODUCTION_DIR"):
        return Path(os.environ["QUANT_PRODUCTION_DIR"])
    return Path(os.environ.get("QUANT_HOME", ".quant")) / "production"


def main(argv: list[str] | None = None) -> int:
    """Start, stop or show the production profile's services."""
    parser = argparse.ArgumentParser(prog="scripts/production", description=__doc__)
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", type=Path, default=None, help="the stack's folder")
    parser.add_argument("--timeout", type=float, default=300, help="start: seconds to be ready")
    args = parser.parse_args(argv)
    stack = ProductionStack(args.state_dir or default_state_dir())
    if args.command == "start":
        where = "the server of " + SERVER_URL_ENV if os.environ.get(SERVER_URL_ENV) else None
        print(f"starting the production stack in {stack.state_dir} "
              f"(PostgreSQL: {where or 'a throw-away server'})")  # fmt: skip
        try:
            stack.start(timeout_s=args.timeout)
        except StackError as err:
            print(f"start failed, everything stopped: {err}", file=sys.stderr)
            return 1
        print(f"Dagster UI {stack.webserver_url}   MLflow {stack.mlflow_url}")
        same_dir = f" --state-dir {args.state_dir}" if args.state_dir else ""
        print(f"logs in {stack.logs}; stop with: scripts/production stop{same_dir}")
        return 0
    if args.command == "stop":
        if not stack.state():
            print("no stack recorded; nothing to stop")
        killed = stack.stop()
        print(
            "stopped" + (f" (killed after the grace period: {', '.join(killed)})" if killed else "")
        )
        return 0
    status = stack.status()
    if not status:
        print("not running")
        return 3
    for name, state in status.items():
        print(f"{name:12} {state}")
    return 0 if all(s == "running" for s in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
