"""The deployment registry: ``model_config.json``, which model serves, what served before, and why.

File and schema (``schema_version`` 1)
---------------------------------------
``Settings.model_config_path`` (default ``QUANT_HOME/config/model_config.json``)::

    {
      "schema_version": 1,
      "revision": 3,                      # = changes[-1].seq; +1 on every write
      "updated_at": "2026-10-02T01:12:09.120000Z",
      "champion": {                       # null until the first promotion
        "model": {"arch": "transformer", "version": 4,
                  "path": "models/transformer_v4/transformer_v4.tflite",   # relative to QUANT_HOME
                  "sha256": "9f2c…"},
        "metrics": {"macro_f1_updown": 0.41, "precision_up": 0.44, "log_loss": 1.02, …},
        "promoted_at": "2026-10-02T01:12:09.120000Z",
        "promoted_reason": "transformer_v4 beats lstm_v3: Δmacro-F1 +0.031 ≥ 0.020, …",
        "mlflow_run_id": "1b2c…"
      },
      "history": [ …previous *stable* champions, oldest first; rollback targets…
        {"model": {…lstm_v3…}, "metrics": {…}, "promoted_at": "…", "promoted_reason": "…",
         "mlflow_run_id": "…", "retired_at": "…", "retired_reason": "replaced by transformer_v4: …"}
      ],
      "retired": [ …champions taken out by a rollback (unstable, never a rollback target)… ],
      "changes": [ …append-only audit log, oldest first…
        {"seq": 3, "at": "…", "action": "promote", "from_model": "lstm_v3",
         "to_model": "transformer_v4", "reason": "…", "actor": "host:pid"}
      ]
    }

Bounds: ``history`` keeps the newest 20 stable champions, ``retired`` 20, ``changes`` the last
200 (seqs stay consecutive); the journal keeps every snapshot until it passes 16 MB, then its
newest 50.

Invariants checked on every load and before every write (a file breaking one is *corrupt*):
a model name (``{arch}_v{version}``) appears at most once in champion + history; paths are
relative and stay under ``QUANT_HOME``; ``changes`` seqs are consecutive and chained
(each change's ``from_model`` is the previous change's ``to_model``); the last change leads to
the current champion; ``revision`` equals the last seq; timestamps never go backwards.

Writes
------
Every change (``promote``, ``rollback``, ``recover_from_history``) happens under a cross-process
``filelock`` on ``model_config.json.lock``: read, validate, change, validate, write to a temp
file in the same folder, fsync, ``os.replace``, fsync the folder; then append the new full
snapshot as one line to ``model_config.journal.jsonl`` (fsynced). Readers never lock: they see
the old or the new file, never a torn one. Writers compare-and-swap with ``expected_champion``,
so a rollback decided against champion X does not roll back a Y promoted in the meantime.
MLflow is never touched under the lock (``mlflow_alias`` syncs afterwards and may fail alone).

Errors and recovery
-------------------
``load()`` raises a ``RegistryError`` subclass with the path and the fix in its message:
``RegistryMissingError`` (file gone while a journal exists; a first run with neither is just
"no champion"), ``RegistryCorruptError`` (truncated/invalid JSON, schema or invariant
violation), ``RegistryVersionError`` (``schema_version`` this code does not know — written by a
newer release or by hand) and, with ``check_files=True``, ``ChampionFileMissingError``.
``rollback`` never raises for these: it returns ``outcome="registry_unreadable"`` (or
``"no_previous_version"``), so a sensor calling it cannot crash-loop.

Recovery, ``recover_from_history()`` (CLI: ``quant registry recover``, see ``deployment.cli``):

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
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from filelock import FileLock
from filelock import Timeout as LockTimeout
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from quant_assets.settings import Settings, get_settings
from quant_assets.storage.files import atomic_write_bytes

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
MAX_HISTORY = 20
MAX_RETIRED = 20
MAX_CHANGES = 200  # the audit log kept in the file (a snapshot at the cap is ~60 KB)
JOURNAL_COMPACT_BYTES = 16 * 1024 * 1024  # then the journal keeps its newest snapshots only
JOURNAL_KEEP_LINES = 50
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

Action = Literal["promote", "rollback", "recover"]


def journal_path_for(path: Path) -> Path:
    """``model_config.journal.jsonl`` beside ``model_config.json``."""
    return path.with_name(path.stem + ".journal.jsonl")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class RegistryError(RuntimeError):
    """model_config.json cannot be used; the message says why and how to recover."""

    def __init__(self, path: Path, problem: str, fix: str | None = None) -> None:
        self.path = path
        self.problem = problem
        fix = fix or (
            "Recover with `quant registry recover` (ModelRegistry.recover_from_history()): "
            "it restores the newest valid snapshot from "
            f"{journal_path_for(path).name}."
        )
        super().__init__(f"{path}: {problem}. {fix}")


class RegistryMissingError(RegistryError):
    """The file is missing although a journal shows it existed."""


class RegistryCorruptError(RegistryError):
    """Truncated or invalid JSON, or a schema / invariant violation."""


class RegistryVersionError(RegistryError):
    """A ``schema_version`` this code cannot read."""


class ChampionFileMissingError(RegistryError):
    """The champion's model file named in the config does not exist."""


class RegistryUnrecoverableError(RegistryError):
    """Recovery found no valid snapshot (and was not allowed to start empty)."""


class RegistryLockTimeoutError(RegistryError):
    """Another process held the registry lock for too long."""


class ModelFileMissingError(FileNotFoundError):
    """A model asked to be promoted has no file."""


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    """One deployable model: its architecture, version and TFLite file (relative to home)."""

    arch: str
    version: int = Field(ge=1)
    path: str = Field(description="TFLite file, POSIX path relative to QUANT_HOME")
    sha256: str | None = Field(None, description="hex digest of the file when it was promoted")

    @field_validator("arch")
    @classmethod
    def _check_arch(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"arch must match {_NAME.pattern}, got {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        p = PurePosixPath(value)
        if not value or p.is_absolute() or "\\" in value or ".." in p.parts or ":" in value:
            raise ValueError(f"path must be relative to QUANT_HOME without '..', got {value!r}")
        return str(p)

    @property
    def name(self) -> str:
        """``{arch}_v{version}``, the identity of a model in the registry."""
        return f"{self.arch}_v{self.version}"

    @property
    def bundle_dir(self) -> str:
        """The bundle folder (the TFLite file's parent), relative to QUANT_HOME."""
        return str(PurePosixPath(self.path).parent)

    @classmethod
    def for_bundle(cls, home: Path, bundle_dir: Path, *, with_hash: bool = True) -> ModelRef:
        """The ref of a bundle folder ``{arch}_v{N}`` holding ``{arch}_v{N}.tflite``."""
        bundle_dir = Path(bundle_dir)
        match = re.fullmatch(r"([a-z][a-z0-9_]*)_v(\d+)", bundle_dir.name)
        if match is None:
            raise ValueError(f"bundle folder must be named {{arch}}_v{{N}}, got {bundle_dir}")
        tflite = bundle_dir / f"{bundle_dir.name}.tflite"
        rel = relative_to_home(home, tflite)
        digest = file_sha256(tflite) if with_hash and tflite.exists() else None
        return cls(arch=match[1], version=int(match[2]), path=rel, sha256=digest)


class Deployment(_Strict):
    """A model in the champion slot: its validation metrics and why it got there."""

    model: ModelRef
    metrics: dict[str, float] = Field(default_factory=dict)
    promoted_at: AwareDatetime
    promoted_reason: str
    mlflow_run_id: str | None = None


class HistoryEntry(Deployment):
    """A former champion, with when and why it left the slot."""

    retired_at: AwareDatetime
    retired_reason: str

    @model_validator(mode="after")
    def _ordered(self) -> HistoryEntry:
        if self.retired_at < self.promoted_at:
            raise ValueError(f"{self.model.name}: retired_at is before promoted_at")
        return self


class Change(_Strict):
    """One entry of the audit log: every write of the file is exactly one change."""

    seq: int = Field(ge=1)
    at: AwareDatetime
    action: Action
    from_model: str | None
    to_model: str | None
    reason: str
    actor: str


class ModelConfig(_Strict):
    """The whole ``model_config.json`` (see the module docstring for an example)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    revision: int = Field(0, ge=0)
    updated_at: AwareDatetime | None = None
    champion: Deployment | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    retired: list[HistoryEntry] = Field(default_factory=list)
    changes: list[Change] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        names = [h.model.name for h in self.history]
        if self.champion is not None:
            names.append(self.champion.model.name)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models listed twice in champion + history: {dupes}")
        for a, b in zip(self.history, self.history[1:], strict=False):
            if b.retired_at < a.retired_at:
                raise ValueError("history is not ordered by retired_at")
        if (
            self.champion is not None
            and self.history
            and self.champion.promoted_at < self.history[-1].retired_at
        ):
            raise ValueError("champion promoted before the last history entry retired")
        expected_revision = self.changes[-1].seq if self.changes else 0
        if self.revision != expected_revision:
            raise ValueError(f"revision {self.revision} != last change seq {expected_revision}")
        for a, b in zip(self.changes, self.changes[1:], strict=False):
            if b.seq != a.seq + 1:
                raise ValueError(f"change seq jumps from {a.seq} to {b.seq}")
            if b.from_model != a.to_model:
                raise ValueError(
                    f"change {b.seq} starts from {b.from_model} but change {a.seq} "
                    f"ended at {a.to_model}"
                )
            if b.at < a.at:
                raise ValueError(f"change {b.seq} is dated before change {a.seq}")
        champion = self.champion.model.name if self.champion else None
        if self.changes and self.changes[-1].to_model != champion:
            raise ValueError(
                f"last change leads to {self.changes[-1].to_model} but champion is {champion}"
            )
        return self

    def model_names(self) -> list[str]:
        """Champion first, then history newest first: every model the config relies on."""
        out = [self.champion.model.name] if self.champion else []
        return out + [h.model.name for h in reversed(self.history)]


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromoteResult:
    """What ``promote`` did. ``outcome``: promoted | already_champion | champion_changed."""

    outcome: Literal["promoted", "already_champion", "champion_changed"]
    previous: str | None
    current: str | None
    revision: int
    message: str
    alias_sync: Any = None

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
    alias_sync: Any = None

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
    alias_sync: Any = None


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


class _Unset(enum.Enum):
    UNSET = 0


UNSET = _Unset.UNSET


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def relative_to_home(home: Path, path: Path) -> str:
    """``path`` as a POSIX path relative to ``home`` (it must lie under home)."""
    home_abs = Path(home).resolve()
    p_abs = Path(path).resolve()  # a relative path is relative to the working directory
    try:
        return p_abs.relative_to(home_abs).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not under QUANT_HOME {home_abs}") from None


def _now(floor: datetime | None = None) -> datetime:
    # Timestamps never go backwards in one file, even if the wall clock does.
    now = datetime.now(UTC)
    return max(now, floor) if floor is not None else now


def _actor() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _summarize(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(x) for x in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    more = f" (+{err.error_count() - 5} more)" if err.error_count() > 5 else ""
    return "; ".join(parts) + more


def parse_config(text: str, path: Path) -> ModelConfig:
    """Parse and validate the file's text; raise a clear ``RegistryError`` subclass."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        what = "empty file" if not text.strip() else f"invalid or truncated JSON ({e})"
        raise RegistryCorruptError(path, what) from None
    if not isinstance(raw, dict):
        raise RegistryCorruptError(path, f"top level is {type(raw).__name__}, not an object")
    version = raw.get("schema_version")
    if version is None:
        raise RegistryCorruptError(path, "no schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise RegistryVersionError(
            path,
            f"schema_version {version!r} is not one this code reads {SUPPORTED_SCHEMA_VERSIONS}",
            "Upgrade quant_assets if a newer release wrote it; otherwise "
            "`quant registry recover --force` moves it aside and restores the newest "
            "readable snapshot from the journal.",
        )
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as e:
        raise RegistryCorruptError(path, f"schema violation: {_summarize(e)}") from None


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------
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
        # Round-trip through the reader first: a file this code cannot read is never written.
        text = cfg.model_dump_json(indent=2) + "\n"
        parse_config(text, self.path)
        atomic_write_bytes(self.path, text.encode())
        self._append_journal(cfg)

    def _append_journal(self, cfg: ModelConfig) -> None:
        line = (cfg.model_dump_json() + "\n").encode()
        try:
            with open(self.journal_path, "ab") as f:
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
        expected_champion: str | _Unset | None = UNSET,
    ) -> PromoteResult:
        """Make ``model`` the champion; the old champion goes to history (a stable entry).

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
                action="promote",
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
        self, reason: str, *, expected_champion: str | _Unset | None = UNSET
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


# ---------------------------------------------------------------------------------------------
# Module-level API (settings-based; keeps the MLflow alias in step after each change)
# ---------------------------------------------------------------------------------------------
def _sync(settings: Settings, registry: ModelRegistry, sync_mlflow: bool) -> Any:
    if not sync_mlflow:
        return None
    from quant_assets.deployment.mlflow_alias import sync_champion_alias

    return sync_champion_alias(registry, tracking_uri=settings.mlflow_tracking_uri)


def promote(
    model: ModelRef,
    *,
    reason: str,
    metrics: dict[str, float] | None = None,
    mlflow_run_id: str | None = None,
    expected_champion: str | _Unset | None = UNSET,
    settings: Settings | None = None,
    sync_mlflow: bool = True,
) -> PromoteResult:
    """``ModelRegistry.promote`` on the configured registry, then sync the MLflow alias."""
    s = settings or get_settings()
    registry = ModelRegistry.from_settings(s)
    result = registry.promote(
        model,
        reason=reason,
        metrics=metrics,
        mlflow_run_id=mlflow_run_id,
        expected_champion=expected_champion,
    )
    if result.changed:
        result = _with_alias(result, _sync(s, registry, sync_mlflow))
    return result


def rollback(
    reason: str,
    *,
    expected_champion: str | _Unset | None = UNSET,
    settings: Settings | None = None,
    sync_mlflow: bool = True,
) -> RollbackResult:
    """Roll the configured registry back to the previous stable champion (never raises for a
    bad registry or an empty history; see ``RollbackResult.outcome``), then sync MLflow."""
    s = settings or get_settings()
    registry = ModelRegistry.from_settings(s)
    result = registry.rollback(reason, expected_champion=expected_champion)
    if result.changed:
        result = _with_alias(result, _sync(s, registry, sync_mlflow))
    return result


def recover_from_history(
    reason: str = "recovery",
    *,
    force: bool = False,
    allow_empty: bool = False,
    settings: Settings | None = None,
    sync_mlflow: bool = True,
) -> RecoveryResult:
    """``ModelRegistry.recover_from_history`` on the configured registry, then sync MLflow."""
    s = settings or get_settings()
    registry = ModelRegistry.from_settings(s)
    result = registry.recover_from_history(reason, force=force, allow_empty=allow_empty)
    if result.outcome != "healthy":
        result = _with_alias(result, _sync(s, registry, sync_mlflow))
    return result


def _with_alias[R: (PromoteResult, RollbackResult, RecoveryResult)](result: R, alias: Any) -> R:
    return replace(result, alias_sync=alias)


__all__ = [
    "SCHEMA_VERSION",
    "ChampionFileMissingError",
    "Deployment",
    "HistoryEntry",
    "ModelConfig",
    "ModelFileMissingError",
    "ModelRef",
    "ModelRegistry",
    "PromoteResult",
    "RecoveryResult",
    "RegistryCorruptError",
    "RegistryError",
    "RegistryLockTimeoutError",
    "RegistryMissingError",
    "RegistryStatus",
    "RegistryUnrecoverableError",
    "RegistryVersionError",
    "RollbackResult",
    "parse_config",
    "promote",
    "recover_from_history",
    "rollback",
]
