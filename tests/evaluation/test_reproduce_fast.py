"""``syncguide reproduce --sync-mode``: fast mode reaches the SyncDiffusion items only, and a run directory keeps
one mode (a rerun with the other is refused before any work, as any other changed setting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncguide.cli.main import main
from syncguide.errors import SettingError, UsageError
from syncguide.evaluation.protocol import DEMO_PROMPTS, ReproduceSettings, check_settings, plan, reproduce
from syncguide.evaluation.protocol_report import write_readme
from syncguide.scaleout import read_manifest

WINDOW = 64
"""The demo model's window in px (plan() takes it as given: no model is read)."""


def _plan(tmp_path: Path, mode: str) -> list:
    settings = ReproduceSettings(out=tmp_path / "run", seeds=2, weights=(0.0, 2.0, 5.0), sync_mode=mode)
    return plan(settings, list(DEMO_PROMPTS[:2]), WINDOW)


def test_fast_mode_adds_sync_mode_to_exactly_the_sync_items(tmp_path: Path) -> None:
    exact, fast = _plan(tmp_path, "exact"), _plan(tmp_path, "fast")
    assert [i.output for i in exact] == [i.output for i in fast]
    n_sync = 0
    for before, after in zip(exact, fast, strict=True):
        assert "--sync-mode" not in before.args  # exact: panorama's default, the items of earlier runs
        if before.meta.get("weight", 0) > 0:
            n_sync += 1
            position = after.args.index("--sync-mode")
            assert after.args[position + 1] == "fast" and after.args.count("--sync-mode") == 1
            assert after.args[:position] + after.args[position + 2 :] == before.args
        else:  # MultiDiffusion panoramas and the references: unchanged
            assert after == before
    assert n_sync == 2 * 2 * 2  # prompts x sync weights x seeds


def test_sync_mode_is_checked(tmp_path: Path, capsys) -> None:
    with pytest.raises(SettingError) as error:
        check_settings(ReproduceSettings(out=tmp_path / "run", sync_mode="approximate"))
    assert error.value.setting == "sync_mode" and "exact, fast" in error.value.rule
    with pytest.raises(SystemExit) as exit_:  # argparse's choices
        main(["reproduce", "--sync-mode", "approximate", "--out", str(tmp_path / "cli")])
    assert exit_.value.code == 2 and "--sync-mode" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cli").exists()


class _Stop(Exception):
    """Raised by the generator below: the run got past its manifest."""


def _generate(items: list, root: Path, state: object) -> list[str]:
    raise _Stop


def test_a_rerun_with_the_other_mode_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "run"
    exact = ReproduceSettings(out=out, seeds=2, weights=(0.0, 2.0), references=1, sync_mode="exact")
    with pytest.raises(_Stop):  # the manifest is written, then the generator runs
        reproduce(exact, _generate)
    manifest = (out / "manifest.jsonl").read_text()
    fast = ReproduceSettings(out=out, seeds=2, weights=(0.0, 2.0), references=1, sync_mode="fast")
    with pytest.raises(UsageError, match="holds a different manifest"):  # before the generator
        reproduce(fast, _generate)
    assert (out / "manifest.jsonl").read_text() == manifest
    with pytest.raises(_Stop):  # the same mode resumes
        reproduce(exact, _generate)
    fresh = tmp_path / "fast"
    with pytest.raises(_Stop):  # fast in its own directory
        reproduce(ReproduceSettings(out=fresh, seeds=2, weights=(0.0, 2.0), references=1, sync_mode="fast"), _generate)
    sync = [i for i in read_manifest(fresh / "manifest.jsonl") if i.meta.get("weight", 0) > 0]
    assert sync and all(i.args[i.args.index("--sync-mode") + 1] == "fast" for i in sync)


def test_the_readme_names_the_sync_mode(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.md").write_text("| method |\n|---|\n")
    for mode in ("exact", "fast"):
        write_readme(tmp_path, "syncguide reproduce", {"methods": {}}, 60.0, seeds=2, n_prompts=1, sync_mode=mode)
        assert f"SyncDiffusion sync mode: {mode};" in (tmp_path / "README.md").read_text()
