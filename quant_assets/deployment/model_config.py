"""``model_config.json``: its schema (which model serves, what served before, and why) and errors.

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

Errors
------
``ModelRegistry.load()`` raises a ``RegistryError`` subclass with the path and the fix in its
message: ``RegistryMissingError`` (file gone while a journal exists; a first run with neither
is just "no champion"), ``RegistryCorruptError`` (truncated/invalid JSON, schema or invariant
violation), ``RegistryVersionError`` (``schema_version`` this code does not know — written by a
newer release or by hand) and, with ``check_files=True``, ``ChampionFileMissingError``.
``rollback`` never raises for these: it returns ``outcome="registry_unreadable"`` (or
``"no_previous_version"``), so a sensor calling it cannot crash-loop.

``ModelRegistry`` (``deployment.registry``) reads and writes the file; this module only says what
a valid one is.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from quant_assets.models.bundle import bundle_name, parse_bundle_name, tflite_path

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
_ARCH = re.compile(r"^[a-z][a-z0-9_]*$")

Action = Literal["promote", "manual_promote", "rollback", "recover"]


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
        if not _ARCH.match(value):
            raise ValueError(f"arch must match {_ARCH.pattern}, got {value!r}")
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
        return bundle_name(self.arch, self.version)

    @property
    def bundle_dir(self) -> str:
        """The bundle folder (the TFLite file's parent), relative to QUANT_HOME."""
        return str(PurePosixPath(self.path).parent)

    @classmethod
    def for_bundle(cls, home: Path, bundle_dir: Path, *, with_hash: bool = True) -> ModelRef:
        """The ref of a bundle folder ``{arch}_v{N}`` holding ``{arch}_v{N}.tflite``."""
        bundle_dir = Path(bundle_dir)
        parsed = parse_bundle_name(bundle_dir.name)
        if parsed is None:
            raise ValueError(f"bundle folder must be named {{arch}}_v{{N}}, got {bundle_dir}")
        tflite = tflite_path(bundle_dir)
        rel = relative_to_home(home, tflite)
        digest = file_sha256(tflite) if with_hash and tflite.exists() else None
        return cls(arch=parsed[0], version=parsed[1], path=rel, sha256=digest)


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
