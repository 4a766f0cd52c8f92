"""What the deployment operations did: promotion, rollback, recovery, health, the MLflow mirror.

Plain results, shared by the store (``deployment.registry``), the MLflow alias mirror
(``deployment.mlflow_alias``) and the champion operations (``deployment.champion``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from quant_assets.deployment.model_config import ModelConfig


@dataclass(frozen=True)
class AliasSyncResult:
    """What an MLflow alias sync did. ``action``: set | unchanged | deleted | absent | failed."""

    ok: bool
    action: Literal["set", "unchanged", "deleted", "absent", "failed"]
    model: str | None
    model_version: str | None
    message: str
    arch_model_version: str | None = None  # quant-{arch} version now aliased, if any


@dataclass(frozen=True)
class PromoteResult:
    """What ``promote`` did. ``outcome``: promoted | already_champion | champion_changed."""

    outcome: Literal["promoted", "already_champion", "champion_changed"]
    previous: str | None
    current: str | None
    revision: int
    message: str
    alias_sync: AliasSyncResult | None = None

    @property
    def changed(self) -> bool:
        """True when the file was written."""
        return self.outcome == "promoted"


@dataclass(frozen=True)
class RollbackResult:
    """What ``rollback`` did; it never raises for a bad registry or an empty history.

    ``outcome``: rolled_back | no_previous_version | no_champion | champion_changed |
    registry_unreadable.
    """

    outcome: Literal[
        "rolled_back",
        "no_previous_version",
        "no_champion",
        "champion_changed",
        "registry_unreadable",
    ]
    previous: str | None
    current: str | None
    reason: str
    message: str
    revision: int | None = None
    skipped: tuple[str, ...] = ()
    alias_sync: AliasSyncResult | None = None

    @property
    def changed(self) -> bool:
        """True when the champion switched."""
        return self.outcome == "rolled_back"


@dataclass(frozen=True)
class RecoveryResult:
    """What ``recover_from_history`` did. ``outcome``: healthy | rolled_back | cleared |
    restored | restored_empty."""

    outcome: Literal["healthy", "rolled_back", "cleared", "restored", "restored_empty"]
    champion: str | None
    message: str
    revision: int
    moved_aside: Path | None = None
    restored_revision: int | None = None
    skipped: tuple[str, ...] = ()
    alias_sync: AliasSyncResult | None = None


@dataclass(frozen=True)
class RegistryStatus:
    """A never-raising health summary (for checks, sensors and the CLI)."""

    state: Literal[
        "ok", "first_run", "missing", "corrupt", "unknown_version", "champion_file_missing"
    ]
    message: str
    config: ModelConfig | None = None

    @property
    def ok(self) -> bool:
        """True when the file is usable (a first run with no file counts as usable)."""
        return self.state in ("ok", "first_run")


class Unset(enum.Enum):
    UNSET = 0


UNSET = Unset.UNSET
