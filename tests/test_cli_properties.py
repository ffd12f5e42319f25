"""The command line's contract, drawn rather than listed: every numeric and path option of every subcommand.

For each subcommand, hypothesis draws an option of it (found by walking the parser, so a new option is covered
without editing this file) and a bad or edge value. Bad input must exit 2 with exactly one line on stderr, no
traceback, and no file created or changed; an edge value that is valid may succeed instead (cheap commands only:
the others get only values that no rule allows, so nothing long ever starts).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncguide.cli.main import build_parser, main
from syncguide.cli.options import seed
from syncguide.cli.parser import actions, subcommands

# values no numeric option accepts: not numbers, not finite, beyond float range
NEVER_NUMBERS = ["nan", "inf", "-inf", "NaN", "x", "", "1e400", "-1e400", "0x10", "1,5"]
NEVER_INTEGERS = [*NEVER_NUMBERS, "1.5", "1e3"]
# values some options accept and others refuse (the command decides; either way it must be clean)
EDGES = ["0", "-1", "1", "2", "-0.0", "1e-30", "1000000000", "1e30", "-1e30", str(2**63)]
EXAMPLES = int(os.environ.get("SYNCGUIDE_PROPERTY_EXAMPLES", "15"))


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every leaf subcommand (``demo world`` included) with its parser."""
    children = subcommands(parser)
    for name, sub in children.items():
        yield from commands(sub, (*prefix, name))
    if not children:
        yield " ".join(prefix), parser


POSITIONAL = "POSITIONAL"
"""Stands for a subcommand's path positional (always the first argument after the command in :func:`base_argv`)."""


def typed_options(parser: argparse.ArgumentParser) -> tuple[list[str], list[str], list[str]]:
    """``(integer, float, path)`` option strings of a subcommand's parser (``--seed`` counts as an integer; a path
    positional is :data:`POSITIONAL`)."""
    ints, floats, paths = [], [], []
    for action in actions(parser):
        if not action.option_strings:
            if action.type is Path:
                paths.append(POSITIONAL)
            continue
        kind = {int: ints, seed: ints, float: floats, Path: paths}.get(action.type)
        if kind is not None:
            kind.append(action.option_strings[0])
    return ints, floats, paths


PARSERS = dict(commands(build_parser()))


def base_argv(command: str, tiny: Path, work: Path) -> list[str]:
    """A valid, quick command line for ``command`` (its required arguments; tiny models, one or two steps)."""
    fast = ["--model", str(tiny), "--steps", "1", "--height", "64", "--width", "128", "--stride", "4"]
    fast += ["--perceptual", "lpips-random"]
    return {
        "panorama": ["panorama", "a", *fast, "--out", str(work / "o.png")],
        "layout": ["layout", "--background", "sky", "--box", "a", "0,0,0.5,1", *fast, "--out", str(work / "o.png")],
        "generate": ["generate", "--n", "1", "--batch-size", "1", "--steps", "2", "--out", str(work / "samples")],
        "finetune-clip": ["finetune-clip", "--steps", "1", "--out", str(work / "clip")],
        "demo world": ["demo", "world", "--out", str(work / "w.png")],
        "demo edges": ["demo", "edges", str(work / "p.png"), "--out", str(work / "e.png")],
        "demo train": ["demo", "train", "vae", "--steps", "1", "--out", str(work / "run")],
        "batch": ["batch", str(work / "manifest.jsonl"), "--out", str(work / "batch")],
        "eval": ["eval", str(work / "panoramas"), "--out", str(work / "eval")],
        "reproduce": ["reproduce", "--out", str(work / "rep")],
        "info": ["info", str(work / "p.png")],
        # a model that is not there: whatever else is drawn, the app never starts serving (it would block)
        "app": ["app", "--model", str(work / "no-model"), "--outputs", str(work / "app")],
    }[command]


SKIPPED = {"demo train": ("--vae",)}
"""Options not drawn, with the reason: ``demo train --vae`` is read by the sd and vae-decoder recipes only, and the
vae recipe (the base here, the one cheap enough) ignores it, bad or not (a known gap: it has a default, so the
command cannot tell that it was given)."""

CHEAP = ("panorama", "layout", "demo world", "demo edges", "info")
"""Commands a valid edge value may run to the end (a second or two)."""


def test_every_subcommand_is_covered() -> None:
    assert set(PARSERS) == {
        "panorama",
        "layout",
        "generate",
        "finetune-clip",
        "demo world",
        "demo edges",
        "demo train",
        "batch",
        "eval",
        "reproduce",
        "info",
        "app",
    }
    assert all(any(typed_options(p)) for p in PARSERS.values())


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _workspace(work: Path) -> None:
    """Inputs the path draws point at: a directory, a file of junk bytes, an empty file, a real PNG."""
    (work / "adir").mkdir()
    (work / "panoramas").mkdir()
    (work / "junk.bin").write_bytes(bytes(range(256)) * 4)
    (work / "empty").write_bytes(b"")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(work / "p.png")
    (work / "manifest.jsonl").write_text("")


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = int(exit_.code)
    return status, err.getvalue()


def _check(argv: list[str], work: Path, must_fail: bool) -> None:
    before = _snapshot(work)
    status, err = _run(argv)
    assert "Traceback" not in err, err[-2000:]
    assert status in ((2,) if must_fail else (0, 2)), (argv, status, err[-1000:])
    if status == 2:
        lines = [line for line in err.splitlines() if "error" in line]
        assert len(lines) == 1, (argv, err[-1000:])
        assert not [line for line in err.splitlines() if line.startswith("usage")], err
        assert _snapshot(work) == before, (argv, err)


def _path_values(work: Path, option: str) -> list[str]:
    long_name = str(work / ("x" * 300 + ".png"))
    if option == "--out":
        return [str(work / "junk.bin"), long_name]
    return [str(work / "missing.png"), str(work / "adir"), str(work / "junk.bin"), str(work / "empty"), long_name]


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_bad_and_edge_values_keep_the_contract(command: str, tiny_dir: Path) -> None:
    ints, floats, paths = typed_options(PARSERS[command])
    paths = [p for p in paths if p not in SKIPPED.get(command, ())]
    cheap = command in CHEAP

    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        kind = data.draw(
            st.sampled_from([k for k, opts in (("int", ints), ("float", floats), ("path", paths)) if opts])
        )
        option = data.draw(st.sampled_from({"int": ints, "float": floats, "path": paths}[kind]))
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _workspace(work)
            if kind == "path":
                value = data.draw(st.sampled_from(_path_values(work, option)))
                must_fail = not cheap or value.endswith(("junk.bin", "empty", "missing.png", "x.png"))
            else:
                never = NEVER_INTEGERS if kind == "int" else NEVER_NUMBERS
                value = data.draw(st.sampled_from(never + EDGES) if cheap else st.sampled_from(never))
                must_fail = value in never
            argv = base_argv(command, tiny_dir, work)
            if option == POSITIONAL:
                argv[1] = value
            else:
                argv.append(f"{option}={value}")
            _check(argv, work, must_fail)

    check()
