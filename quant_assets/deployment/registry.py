"""The deployment registry: the locked, journaled store of ``model_config.json``.

Writes
------
Every change (``promote``, ``rollback``, ``recover_from_history``) happens under a cross-process
``filelock`` on ``model_config.json.lock``: read, validate, change, validate, write to a temp
file in the same folder, fsync, ``os.replace``, fsync the folder; then append the new full
snapshot as one line to ``model_config.journal.jsonl`` (fsynced). Readers never lock: they see
the old or the new file, never a torn one. Writers compare-and-swap with ``expected_champion``,
so a rollback decided against champion X does not roll back a Y promoted in the meantime.
MLflow is never touched under the lock (``deployment.champion`` syncs the alias afterwards, and
that may fail alone).

Recovery, ``recover_from_history()`` (CLI: ``quant registry recover``):

1. Under the lock, if the file loads and its champion file exists, nothing is done.
2. If the file loads but the champion's file is missing, it rolls back to the newest history
   entry whose file exists (entries without a file move to ``retired``); with none, the
   champion becomes null (the next ``champion_model`` run promotes against the baseline).
3. If the file is missing, corrupt or of an unknown version (the last only with
   ``force=True``), the bad file is moved aside to ``model_config.json.corrupt-<UTC time>``
   and the valid snapshot with the highest revision in ``model_config.journal.jsonl`` is
   restored (then step 2 applies to it). With no valid snapshot it raises
   ``RegistryUnrecoverableError`` unless ``allow_empty=True``, which starts an empty registry.

Every recovery is written as a ``recover`` change with its reason.

The schema is ``deployment.model_config``; ``deployment.champion`` is what callers use to promote,
roll back or recover (it keeps the MLflow alias in step after each change).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

from quant_assets.deployment.model_config import (
    Action,
    ChampionFileMissingError,
    Change,
    Deployment,
    HistoryEntry,
    ModelConfig,
    ModelFileMissingError,
    ModelRef,
    RegistryCorruptError,
    RegistryError,
    RegistryLockTimeoutError,
    RegistryMissingError,
    RegistryUnrecoverableError,
    RegistryVersionError,
    journal_path_for,
    parse_config,
)
from quant_assets.deployment.outcomes import (
    UNSET,
    PromoteResult,
    RecoveryResult,
    RegistryStatus,
    RollbackResult,
    Unset,
)
from quant_assets.settings import Settings, get_settings
from quant_assets.storage.files import atomic_write_bytes

log = logging.getLogger(__name__)

MAX_HISTORY = 20
MAX_RETIRED = 20
MAX_CHANGES = 200  # the audit log kept in the file (a snapshot at the cap is ~60 KB)
JOURNAL_COMPACT_BYTES = 16 * 1024 * 1024  # then the journal keeps its newest snapshots only
JOURNAL_KEEP_LINES = 50


def _now(floor: datetime | None = None) -> datetime:
    # Timestamps never go backwards in one file, even if the wall clock does.
    now = datetime.now(UTC)
    return max(now, floor) if floor is not None else now


def _actor() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ModelRegistry:
    """``model_config.json`` at ``path``; model paths in it are relative to ``home``."""

    path: Path
    home: Path
    lock_timeout_s: float = 60.0
    max_history: int = MAX_HISTORY
    max_retired: int = MAX_RETIRED
    max_changes: int = MAX_CHANGES
    _lock: FileLock = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.home = Path(self.home)
        self._lock = FileLock(str(self.lock_path), timeout=self.lock_timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> ModelRegistry:
        """The registry at ``Settings.model_config_path`` under ``Settings.home``."""
        s = settings or get_settings()
        return cls(path=s.model_config_path, home=s.home, **kwargs)

    @property
    def lock_path(self) -> Path:
        """The cross-process lock file beside the config."""
        return self.path.with_name(self.path.name + ".lock")

    @property
    def journal_path(self) -> Path:
        """Append-only snapshots, one full config per line (the recovery source)."""
        return journal_path_for(self.path)

    def resolve(self, ref: ModelRef) -> Path:
        """The absolute path of a model's TFLite file."""
        return self.home / ref.path

    def exists(self, ref: ModelRef) -> bool:
        """True when the model's file exists."""
        return self.resolve(ref).is_file()

    def bundle_path(self, ref: ModelRef) -> Path:
        """The absolute path of a model's bundle folder (for ``Predictor.load``)."""
        return self.home / ref.bundle_dir

    # -- reading ------------------------------------------------------------------------------
    def load(self, *, allow_first_run: bool = False, check_files: bool = False) -> ModelConfig:
        """The validated config. No lock: writers replace the file atomically.

        ``allow_first_run``: with no file *and* no journal, return an empty config.
        ``check_files``: raise ``ChampionFileMissingError`` if the champion's file is gone.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if allow_first_run and not self.journal_path.exists():
                return ModelConfig()
            if self.journal_path.exists():
                raise RegistryMissingError(
                    self.path, "the file is missing but its journal shows it existed"
                ) from None
            raise RegistryMissingError(
                self.path,
                "no model_config.json: no champion has been promoted yet",
                "Materialize champion_model to promote the first model.",
            ) from None
        except UnicodeDecodeError:
            raise RegistryCorruptError(self.path, "not UTF-8 text") from None
        cfg = parse_config(text, self.path)
        if check_files and cfg.champion is not None and not self.exists(cfg.champion.model):
            raise ChampionFileMissingError(
                self.path,
                f"champion {cfg.champion.model.name}'s file {self.resolve(cfg.champion.model)} "
                "does not exist",
                "`quant registry recover` rolls back to the newest previous champion whose "
                "file exists.",
            )
        return cfg

    def status(self) -> RegistryStatus:
        """Health of the file; never raises."""
        try:
            cfg = self.load(allow_first_run=True, check_files=True)
        except ChampionFileMissingError as e:
            return RegistryStatus("champion_file_missing", str(e))
        except RegistryVersionError as e:
            return RegistryStatus("unknown_version", str(e))
        except RegistryMissingError as e:
            return RegistryStatus("missing", str(e))
        except RegistryError as e:
            return RegistryStatus("corrupt", str(e))
        if not self.path.exists():
            return RegistryStatus("first_run", "no champion promoted yet", cfg)
        champ = cfg.champion.model.name if cfg.champion else "none"
        return RegistryStatus("ok", f"champion {champ}, revision {cfg.revision}", cfg)

    def champion(self) -> Deployment | None:
        """The current champion (None before the first promotion)."""
        return self.load(allow_first_run=True).champion

    def read_journal(self) -> list[ModelConfig]:
        """Every valid snapshot in the journal, in file order (bad lines are skipped)."""
        out: list[ModelConfig] = []
        try:
            lines = self.journal_path.read_bytes().splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                out.append(parse_config(line.decode("utf-8"), self.journal_path))
            except (RegistryError, UnicodeDecodeError):
                continue
        return out

    # -- writing ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cross-process registry lock."""
        try:
            with self._lock:
                yield
        except LockTimeout:
            raise RegistryLockTimeoutError(
                self.path,
                f"could not take {self.lock_path} within {self.lock_timeout_s} s",
                "Another process is writing the registry; retry later.",
            ) from None

    def _write(self, cfg: ModelConfig) -> None:
        self._remove_stale_temp_files()  # a killed writer's; we hold the lock
        # Round-trip through the reader first: a file this code cannot read is never written.
        text = cfg.model_dump_json(indent=2) + "\n"
        parse_config(text, self.path)
        atomic_write_bytes(self.path, text.encode())
        self._append_journal(cfg)

    def _append_journal(self, cfg: ModelConfig) -> None:
        line = (cfg.model_dump_json() + "\n").encode()
        try:
            with open(self.journal_path, "ab+") as f:
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # a torn last line: never glue a snapshot to it
                        line = b"\n" + line
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            if self.journal_path.stat().st_size > JOURNAL_COMPACT_BYTES:
                keep = self.journal_path.read_bytes().splitlines()[-JOURNAL_KEEP_LINES:]
                atomic_write_bytes(self.journal_path, b"\n".join(keep) + b"\n")
        except OSError as e:  # the config itself is written; a later write re-snapshots it
            log.warning("could not append to %s: %s", self.journal_path, e)

    def _commit(
        self,
        cfg: ModelConfig,
        *,
        action: Action,
        reason: str,
        champion: Deployment | None,
        history: list[HistoryEntry],
        retired: list[HistoryEntry],
        now: datetime,
    ) -> ModelConfig:
        seq = cfg.revision + 1
        change = Change(
            seq=seq,
            at=now,
            action=action,
            from_model=cfg.champion.model.name if cfg.champion else None,
            to_model=champion.model.name if champion else None,
            reason=reason,
            actor=_actor(),
        )
        new = ModelConfig(
            revision=seq,
            updated_at=now,
            champion=champion,
            history=history[-self.max_history :],
            retired=retired[-self.max_retired :],
            changes=[*cfg.changes, change][-self.max_changes :],
        )
        self._write(new)
        return new

    def promote(
        self,
        model: ModelRef,
        *,
        reason: str,
        metrics: dict[str, float] | None = None,
        mlflow_run_id: str | None = None,
        expected_champion: str | Unset | None = UNSET,
        manual: bool = False,
    ) -> PromoteResult:
        """Make ``model`` the champion; the old champion goes to history (a stable entry).
        ``manual``: a person's deliberate choice, recorded as ``manual_promote``.

        ``expected_champion`` (a name, or None for "no champion"): promote only if the champion
        is still that one, else return ``champion_changed`` without writing. Raises
        ``ModelFileMissingError`` if the model's file does not exist and ``RegistryError``
        if the current file cannot be read (recover first: promotion never overwrites it).
        """
        if not self.exists(model):
            raise ModelFileMissingError(
                f"cannot promote {model.name}: {self.resolve(model)} does not exist"
            )
        with self.locked():
            cfg = self.load(allow_first_run=True)
            current = cfg.champion.model.name if cfg.champion else None
            if expected_champion is not UNSET and expected_champion != current:
                return PromoteResult(
                    "champion_changed",
                    current,
                    current,
                    cfg.revision,
                    f"champion is {current}, not the expected {expected_champion}; not promoted",
                )
            if current == model.name:
                return PromoteResult(
                    "already_champion",
                    current,
                    current,
                    cfg.revision,
                    f"{model.name} is already the champion",
                )
            now = _now(cfg.updated_at)
            history = [h for h in cfg.history if h.model.name != model.name]
            if cfg.champion is not None:
                history.append(
                    HistoryEntry(
                        **cfg.champion.model_dump(),
                        retired_at=now,
                        retired_reason=f"replaced by {model.name}: {reason}",
                    )
                )
            champion = Deployment(
                model=model,
                metrics=dict(metrics or {}),
                promoted_at=now,
                promoted_reason=reason,
                mlflow_run_id=mlflow_run_id,
            )
            new = self._commit(
                cfg,
                action="manual_promote" if manual else "promote",
                reason=reason,
                champion=champion,
                history=history,
                retired=list(cfg.retired),
                now=now,
            )
        log.info("promoted %s (was %s): %s", model.name, current, reason)
        return PromoteResult(
            "promoted",
            current,
            model.name,
            new.revision,
            f"promoted {model.name} (was {current}): {reason}",
        )

    def rollback(
        self, reason: str, *, expected_champion: str | Unset | None = UNSET
    ) -> RollbackResult:
        """Switch the champion to the newest stable history entry whose file exists.

        The rolled-back champion moves to ``retired`` (never a rollback target again). Never
        raises for a missing/corrupt file or an empty history: see ``RollbackResult.outcome``.
        """
        try:
            with self.locked():
                cfg = self.load(allow_first_run=True)
                current = cfg.champion.model.name if cfg.champion else None
                if expected_champion is not UNSET and expected_champion != current:
                    return RollbackResult(
                        "champion_changed",
                        current,
                        current,
                        reason,
                        f"champion is {current}, not the expected {expected_champion}; "
                        "not rolled back",
                        cfg.revision,
                    )
                if cfg.champion is None:
                    return RollbackResult(
                        "no_champion",
                        None,
                        None,
                        reason,
                        "no champion to roll back from",
                        cfg.revision,
                    )
                now = _now(cfg.updated_at)
                step = self._rollback_step(cfg, reason, now, action="rollback")
                if step is None:
                    return RollbackResult(
                        "no_previous_version",
                        current,
                        current,
                        reason,
                        f"no previous stable version with a file to roll back to; "
                        f"{current} stays champion",
                        cfg.revision,
                        skipped=tuple(h.model.name for h in cfg.history),
                    )
                new, skipped = step
        except RegistryError as e:
            log.error("rollback impossible: %s", e)
            return RollbackResult("registry_unreadable", None, None, reason, str(e))
        to = new.champion.model.name if new.champion else None
        log.warning("rolled back %s -> %s: %s", current, to, reason)
        return RollbackResult(
            "rolled_back",
            current,
            to,
            reason,
            f"rolled back {current} -> {to}: {reason}",
            new.revision,
            skipped,
        )

    def _rollback_step(
        self,
        cfg: ModelConfig,
        reason: str,
        now: datetime,
        *,
        action: Action,
        clear_if_none: bool = False,
    ) -> tuple[ModelConfig, tuple[str, ...]] | None:
        """Under the lock: write cfg rolled back to its newest usable history entry."""
        assert cfg.champion is not None
        history = list(cfg.history)
        retired = list(cfg.retired)
        skipped: list[str] = []
        target: HistoryEntry | None = None
        while history:
            candidate = history.pop()
            if self.exists(candidate.model):
                target = candidate
                break
            skipped.append(candidate.model.name)
            retired.append(
                candidate.model_copy(
                    update={
                        "retired_reason": f"{candidate.retired_reason}; file missing at "
                        f"{action} ({now.isoformat()})"
                    }
                )
            )
        if target is None and not clear_if_none:
            return None
        retired.append(
            HistoryEntry(
                **cfg.champion.model_dump(), retired_at=now, retired_reason=f"{action}: {reason}"
            )
        )
        champion = None
        if target is not None:
            champion = Deployment(
                model=target.model,
                metrics=target.metrics,
                promoted_at=now,
                promoted_reason=f"{action} from {cfg.champion.model.name}: {reason}",
                mlflow_run_id=target.mlflow_run_id,
            )
        new = self._commit(
            cfg,
            action=action,
            reason=reason,
            champion=champion,
            history=history,
            retired=retired,
            now=now,
        )
        return new, tuple(skipped)

    def recover_from_history(
        self,
        reason: str = "recovery",
        *,
        force: bool = False,
        allow_empty: bool = False,
    ) -> RecoveryResult:
        """Repair the registry (see the module docstring); a no-op on a healthy file.

        Raises ``RegistryVersionError`` for an unknown schema_version unless ``force`` and
        ``RegistryUnrecoverableError`` when nothing valid is left unless ``allow_empty``.
        """
        with self.locked():
            self._remove_stale_temp_files()
            restored = False
            moved: Path | None = None
            restored_revision: int | None = None
            try:
                cfg = self.load(allow_first_run=True)
            except RegistryVersionError:
                if not force:
                    raise
                restored = True
            except RegistryError:
                restored = True
            if restored:
                cfg, moved, restored_revision = self._restore_from_journal(allow_empty)
                where = f"bad file moved to {moved.name}" if moved else "the file was missing"
                what = (
                    f"restored revision {restored_revision} from the journal ({where})"
                    if restored_revision is not None
                    else f"no valid snapshot in the journal ({where}); started empty"
                )
            elif cfg.champion is None or self.exists(cfg.champion.model):
                name = cfg.champion.model.name if cfg.champion else None
                state = "first run" if not self.path.exists() else "registry is healthy"
                return RecoveryResult("healthy", name, f"{state}; nothing done", cfg.revision)
            else:
                what = "the file is valid"
            now = _now(cfg.updated_at)
            if cfg.champion is not None and not self.exists(cfg.champion.model):
                why = f"{reason}: {what}; champion {cfg.champion.model.name}'s file is missing"
                step = self._rollback_step(cfg, why, now, action="recover", clear_if_none=True)
                assert step is not None
                new, skipped = step
                name = new.champion.model.name if new.champion else None
                log.warning("registry recovered: %s; champion is now %s", why, name)
                return RecoveryResult(
                    "rolled_back" if name is not None else "cleared",
                    name,
                    f"{why}; champion is now {name}",
                    new.revision,
                    moved,
                    restored_revision,
                    skipped,
                )
            why = f"{reason}: {what}"
            new = self._commit(
                cfg,
                action="recover",
                reason=why,
                champion=cfg.champion,
                history=list(cfg.history),
                retired=list(cfg.retired),
                now=now,
            )
            name = new.champion.model.name if new.champion else None
            log.warning("registry recovered: %s", why)
            return RecoveryResult(
                "restored" if restored_revision is not None else "restored_empty",
                name,
                why,
                new.revision,
                moved,
                restored_revision,
            )

    def _restore_from_journal(
        self, allow_empty: bool
    ) -> tuple[ModelConfig, Path | None, int | None]:
        snapshots = self.read_journal()
        if not snapshots and not allow_empty:
            raise RegistryUnrecoverableError(
                self.path,
                f"it is unreadable and {self.journal_path.name} holds no valid snapshot",
                "Restore it from a backup, or run `quant registry recover --allow-empty` to "
                "start an empty registry (the next champion_model run promotes a new champion).",
            )
        moved = None
        if self.path.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            moved = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            os.replace(self.path, moved)
        if not snapshots:
            return ModelConfig(), moved, None
        best = max(enumerate(snapshots), key=lambda t: (t[1].revision, t[0]))[1]
        return best, moved, best.revision

    def _remove_stale_temp_files(self) -> None:
        # Temp files are only created under the lock, so any found while holding it are stale.
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
