"""model_config.json: schema, promote / rollback, atomic writes, corrupt files and recovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from quant_assets.deployment import champion
from quant_assets.deployment.model_config import (
    ChampionFileMissingError,
    ModelConfig,
    ModelFileMissingError,
    ModelRef,
    RegistryCorruptError,
    RegistryMissingError,
    RegistryUnrecoverableError,
    RegistryVersionError,
    parse_config,
)
from quant_assets.deployment.registry import ModelRegistry
from quant_assets.settings import Settings
from quant_assets_tests.deployment.helpers import make_model_file


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> ModelRegistry:
    settings = Settings(home=home, _env_file=None)
    return ModelRegistry.from_settings(settings, lock_timeout_s=10)


def three_champions(registry: ModelRegistry) -> list[ModelRef]:
    """Promote lstm_v1, transformer_v1, lstm_v2 in that order."""
    refs = [
        make_model_file(registry.home, "lstm", 1),
        make_model_file(registry.home, "transformer", 1),
        make_model_file(registry.home, "lstm", 2),
    ]
    for i, ref in enumerate(refs):
        result = registry.promote(
            ref, reason=f"test {i}", metrics={"macro_f1_updown": 0.3 + i / 10}
        )
        assert result.outcome == "promoted"
    return refs


# --- schema ----------------------------------------------------------------------------------
def test_default_path_is_under_home(registry: ModelRegistry, home: Path) -> None:
    assert registry.path == home / "config" / "model_config.json"
    assert registry.journal_path.name == "model_config.journal.jsonl"


def test_first_run_is_an_empty_registry(registry: ModelRegistry) -> None:
    assert registry.champion() is None
    assert registry.status().state == "first_run" and registry.status().ok
    with pytest.raises(RegistryMissingError, match="no champion has been promoted yet"):
        registry.load()


def test_written_file_is_the_documented_schema(registry: ModelRegistry) -> None:
    refs = three_champions(registry)
    raw = json.loads(registry.path.read_text())
    assert raw["schema_version"] == 1 and raw["revision"] == 3
    assert raw["champion"]["model"] == {
        "arch": "lstm",
        "version": 2,
        "path": "models/lstm_v2/lstm_v2.tflite",
        "sha256": refs[2].sha256,
    }
    assert [h["model"]["path"] for h in raw["history"]] == [r.path for r in refs[:2]]
    assert raw["history"][-1]["retired_reason"].startswith("replaced by lstm_v2")
    assert [c["action"] for c in raw["changes"]] == ["promote"] * 3
    assert [(c["from_model"], c["to_model"]) for c in raw["changes"]] == [
        (None, "lstm_v1"),
        ("lstm_v1", "transformer_v1"),
        ("transformer_v1", "lstm_v2"),
    ]
    assert raw["updated_at"].endswith("Z")
    # Every line of the journal is a full valid snapshot, one per revision.
    assert [c.revision for c in registry.read_journal()] == [1, 2, 3]


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../outside.tflite", "models/../../x.tflite", "C:/x.tflite", ""]
)
def test_model_paths_must_stay_under_home(path: str) -> None:
    with pytest.raises(ValueError):
        ModelRef(arch="lstm", version=1, path=path)


def test_invariants_are_enforced(registry: ModelRegistry) -> None:
    three_champions(registry)
    good = json.loads(registry.path.read_text())
    broken = json.loads(json.dumps(good))
    broken["history"].append(broken["history"][0])  # a model twice
    with pytest.raises(RegistryCorruptError, match="twice"):
        parse_config(json.dumps(broken), registry.path)
    broken = json.loads(json.dumps(good))
    broken["changes"][1]["from_model"] = "lstm_v9"  # broken chain
    with pytest.raises(RegistryCorruptError, match="starts from"):
        parse_config(json.dumps(broken), registry.path)
    broken = json.loads(json.dumps(good))
    broken["revision"] = 7
    with pytest.raises(RegistryCorruptError, match="revision"):
        parse_config(json.dumps(broken), registry.path)
    broken = json.loads(json.dumps(good))
    broken["champion"]["surprise"] = 1
    with pytest.raises(RegistryCorruptError, match="Extra inputs"):
        parse_config(json.dumps(broken), registry.path)


# --- promote / rollback ----------------------------------------------------------------------
def test_promote_and_roll_back_through_history(registry: ModelRegistry) -> None:
    refs = three_champions(registry)
    r = registry.rollback("drift: PSI 0.4 on rsi_14")
    assert (r.outcome, r.previous, r.current) == ("rolled_back", "lstm_v2", "transformer_v1")
    cfg = registry.load()
    assert cfg.champion is not None and cfg.champion.model == refs[1]
    assert cfg.champion.metrics == {"macro_f1_updown": pytest.approx(0.4)}  # its own metrics
    assert [h.model.name for h in cfg.history] == ["lstm_v1"]
    assert [h.model.name for h in cfg.retired] == ["lstm_v2"]
    assert cfg.retired[0].retired_reason == "rollback: drift: PSI 0.4 on rsi_14"
    assert cfg.changes[-1].action == "rollback" and cfg.changes[-1].reason.startswith("drift")

    assert registry.rollback("again").current == "lstm_v1"
    r = registry.rollback("once more")
    assert r.outcome == "no_previous_version" and not r.changed and r.current == "lstm_v1"
    assert registry.load().revision == 5  # the refused rollback wrote nothing


def test_promotion_is_idempotent_and_compare_and_swap(registry: ModelRegistry) -> None:
    a = make_model_file(registry.home, "lstm", 1)
    b = make_model_file(registry.home, "lstm", 2)
    assert registry.promote(a, reason="first", expected_champion=None).changed
    assert registry.promote(a, reason="again").outcome == "already_champion"
    stale = registry.promote(b, reason="late", expected_champion="lstm_v0")
    assert stale.outcome == "champion_changed" and registry.load().revision == 1
    assert registry.rollback("x", expected_champion="lstm_v9").outcome == "champion_changed"
    assert registry.promote(b, reason="ok", expected_champion="lstm_v1").changed


def test_re_promoting_a_history_entry_moves_it_out_of_history(registry: ModelRegistry) -> None:
    refs = three_champions(registry)
    registry.promote(refs[0], reason="manual re-promotion")
    cfg = registry.load()
    assert cfg.model_names() == ["lstm_v1", "lstm_v2", "transformer_v1"]


def test_promoting_a_missing_file_is_refused(registry: ModelRegistry) -> None:
    ghost = ModelRef(arch="lstm", version=9, path="models/lstm_v9/lstm_v9.tflite")
    with pytest.raises(ModelFileMissingError, match="lstm_v9"):
        registry.promote(ghost, reason="x")
    assert not registry.path.exists()


def test_rollback_skips_history_entries_whose_file_is_gone(registry: ModelRegistry) -> None:
    refs = three_champions(registry)
    registry.resolve(refs[1]).unlink()  # transformer_v1
    r = registry.rollback("drift")
    assert r.current == "lstm_v1" and r.skipped == ("transformer_v1",)
    cfg = registry.load(check_files=True)
    assert {h.model.name for h in cfg.retired} == {"transformer_v1", "lstm_v2"}


def test_history_is_bounded(home: Path) -> None:
    registry = ModelRegistry.from_settings(
        Settings(home=home, _env_file=None), max_history=3, max_changes=4
    )
    for v in range(1, 8):
        registry.promote(make_model_file(home, "lstm", v), reason=f"v{v}")
    cfg = registry.load()
    assert [h.model.version for h in cfg.history] == [4, 5, 6]
    assert [c.seq for c in cfg.changes] == [4, 5, 6, 7] and cfg.revision == 7


def test_champion_operations_without_mlflow(home: Path) -> None:
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    a = make_model_file(home, "lstm", 1)
    b = make_model_file(home, "transformer", 1)
    assert champion.promote(registry, a, reason="a").changed
    assert champion.promote(registry, b, reason="b").changed
    r = champion.rollback(registry, "drift")
    assert r.current == "lstm_v1" and r.alias_sync is None
    assert champion.rollback(registry, "drift").outcome == ("no_previous_version")


# --- atomic writes ---------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_and_no_temp(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = three_champions(registry)
    before = registry.path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        registry.promote(refs[0], reason="x")
    monkeypatch.undo()
    assert registry.path.read_bytes() == before
    assert list(registry.path.parent.glob("*.tmp")) == []


def test_a_torn_journal_line_is_ignored(registry: ModelRegistry) -> None:
    three_champions(registry)
    with open(registry.journal_path, "ab") as f:
        f.write(b'{"schema_version": 1, "revision": 4, "champ')  # crash mid-append
    assert [c.revision for c in registry.read_journal()] == [1, 2, 3]
    registry.rollback("after crash")
    assert registry.load().revision == 4
    # The next snapshot starts on a line of its own: recovery finds revision 4, not 3.
    assert [c.revision for c in registry.read_journal()] == [1, 2, 3, 4]
    registry.path.unlink()
    assert registry.recover_from_history().restored_revision == 4


# --- corrupt files and recovery --------------------------------------------------------------
def test_truncated_json_gives_a_clear_error_and_recovers(registry: ModelRegistry) -> None:
    three_champions(registry)
    text = registry.path.read_text()
    registry.path.write_text(text[: len(text) // 2])
    with pytest.raises(RegistryCorruptError) as e:
        registry.load()
    assert "truncated JSON" in str(e.value) and "quant registry recover" in str(e.value)
    assert registry.status().state == "corrupt"
    # No crash loop: a rollback asked by a sensor reports instead of raising, every time.
    for _ in range(3):
        assert registry.rollback("drift").outcome == "registry_unreadable"
    with pytest.raises(RegistryCorruptError):
        registry.promote(make_model_file(registry.home, "lstm", 5), reason="x")

    result = registry.recover_from_history()
    assert result.outcome == "restored" and result.restored_revision == 3
    assert (
        result.moved_aside is not None and result.moved_aside.read_text() == text[: len(text) // 2]
    )
    cfg = registry.load(check_files=True)
    assert cfg.champion is not None and cfg.champion.model.name == "lstm_v2"
    assert cfg.revision == 4 and cfg.changes[-1].action == "recover"
    assert registry.recover_from_history().outcome == "healthy"  # idempotent
    assert registry.rollback("drift").current == "transformer_v1"  # history survived


def test_empty_and_non_object_files_are_corrupt(registry: ModelRegistry) -> None:
    three_champions(registry)
    for text, words in [("", "empty file"), ("[1, 2]", "not an object"), ("{}", "schema_version")]:
        registry.path.write_text(text)
        with pytest.raises(RegistryCorruptError, match=words):
            registry.load()


def test_unknown_schema_version_is_never_overwritten_silently(registry: ModelRegistry) -> None:
    three_champions(registry)
    raw = json.loads(registry.path.read_text())
    raw["schema_version"] = 99
    registry.path.write_text(json.dumps(raw))
    with pytest.raises(RegistryVersionError, match="schema_version 99"):
        registry.load()
    assert registry.status().state == "unknown_version"
    assert registry.rollback("drift").outcome == "registry_unreadable"
    with pytest.raises(RegistryVersionError, match="--force"):
        registry.recover_from_history()
    assert json.loads(registry.path.read_text())["schema_version"] == 99  # untouched
    result = registry.recover_from_history(force=True)
    assert result.outcome == "restored" and result.champion == "lstm_v2"
    assert json.loads(result.moved_aside.read_text())["schema_version"] == 99


def test_missing_champion_file_rolls_back_on_recovery(registry: ModelRegistry) -> None:
    refs = three_champions(registry)
    registry.resolve(refs[2]).unlink()
    with pytest.raises(ChampionFileMissingError, match="lstm_v2"):
        registry.load(check_files=True)
    assert registry.status().state == "champion_file_missing"
    result = registry.recover_from_history()
    assert result.outcome == "rolled_back" and result.champion == "transformer_v1"
    cfg = registry.load(check_files=True)
    assert cfg.changes[-1].action == "recover" and "file is missing" in cfg.changes[-1].reason


def test_missing_champion_file_with_no_usable_history_clears(registry: ModelRegistry) -> None:
    ref = make_model_file(registry.home, "lstm", 1)
    registry.promote(ref, reason="only one")
    registry.resolve(ref).unlink()
    result = registry.recover_from_history()
    assert result.outcome == "cleared" and result.champion is None
    assert registry.status().ok and registry.load().champion is None


def test_deleted_config_is_restored_from_the_journal(registry: ModelRegistry) -> None:
    three_champions(registry)
    registry.path.unlink()
    with pytest.raises(RegistryMissingError, match="journal shows it existed"):
        registry.load()
    assert registry.status().state == "missing"
    result = registry.recover_from_history()
    assert result.outcome == "restored" and result.moved_aside is None
    assert registry.load().champion.model.name == "lstm_v2"


def test_corrupt_file_and_corrupt_journal(registry: ModelRegistry) -> None:
    three_champions(registry)
    registry.path.write_text("{")
    registry.journal_path.write_text("garbage\n")
    with pytest.raises(RegistryUnrecoverableError, match="allow-empty"):
        registry.recover_from_history()
    result = registry.recover_from_history(allow_empty=True)
    assert result.outcome == "restored_empty" and result.champion is None
    cfg = registry.load()
    assert cfg.revision == 1 and cfg.changes[0].action == "recover"


@pytest.mark.parametrize("write", ["recover", "promote", "rollback"])
def test_stale_temp_files_are_removed_by_every_write(registry: ModelRegistry, write: str) -> None:
    refs = three_champions(registry)
    stale = registry.path.parent / f".{registry.path.name}.abc123.tmp"
    stale.write_text("{half")  # left by a killed writer
    if write == "recover":
        registry.recover_from_history()
    elif write == "promote":
        registry.promote(refs[0], reason="again")
    else:
        registry.rollback("drift")
    assert not stale.exists()


def test_example_in_docstring_is_a_valid_shape() -> None:
    cfg = ModelConfig()
    assert json.loads(cfg.model_dump_json()) == {
        "schema_version": 1,
        "revision": 0,
        "updated_at": None,
        "champion": None,
        "history": [],
        "retired": [],
        "changes": [],
    }


def test_config_file_is_written_with_a_trailing_newline(registry: ModelRegistry) -> None:
    three_champions(registry)
    assert registry.path.read_bytes().endswith(b"}\n")
    assert os.stat(registry.path).st_size > 0


# --- the CLI the lead wires as `quant registry …` ---------------------------------------------
def test_registry_cli(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from quant_assets.deployment.registry_cli import add_registry_parser, run_registry_command

    settings = Settings(home=home, _env_file=None)
    parser = argparse.ArgumentParser(prog="quant")
    add_registry_parser(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        return run_registry_command(parser.parse_args(["registry", *argv]), settings)

    registry = ModelRegistry.from_settings(settings)
    three_champions(registry)
    assert run("status") == 0 and "ok: champion lstm_v2" in capsys.readouterr().out
    registry.path.write_text("{trunc")
    assert run("status") == 1 and "corrupt" in capsys.readouterr().out
    assert run("rollback", "--reason", "drift", "--no-mlflow") == 1
    assert "recover" in capsys.readouterr().out
    assert run("recover", "--no-mlflow") == 0 and "restored" in capsys.readouterr().out
    assert run("rollback", "--reason", "drift", "--no-mlflow") == 0
    assert "rolled_back" in capsys.readouterr().out
    assert run("show") == 0 and '"schema_version": 1' in capsys.readouterr().out
    assert run("promote", "lstm_v1", "--reason", "by hand", "--no-mlflow") == 1
    assert "cannot promote lstm_v1" in capsys.readouterr().err  # not a loadable bundle


def test_a_relative_home_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default QUANT_HOME is the relative ".quant": bundle paths come relative to the cwd.
    monkeypatch.chdir(tmp_path)
    home = Path(".quant")
    registry = ModelRegistry.from_settings(Settings(home=home, _env_file=None))
    make_model_file(home, "lstm", 1)
    ref = ModelRef.for_bundle(home, home / "models" / "lstm_v1")
    assert ref.path == "models/lstm_v1/lstm_v1.tflite"
    assert registry.promote(ref, reason="relative").changed
    assert registry.load(check_files=True).champion.model == ref
