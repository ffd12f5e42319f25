"""Window parallelism (:mod:`syncguide.parallel`): one panorama over 2 and 3 CPU processes (gloo) writes the same
PNG bytes as one process, for MultiDiffusion, SyncDiffusion, 360-degree wrap with fast sync, a layout with SDG,
and exact SyncDiffusion through a ControlNet;
each process makes only its share of the model calls; rank 0 alone reports and writes; a killed or stopped
process ends the run with one line and no file; processes given different arguments are refused at the start."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from syncguide.cli.main import main
from syncguide.demo.bundled import bundled
from syncguide.models.tiny import save_tiny_controlnet
from syncguide.parallel import Workers

PROMPT = "a snowy mountain range"
SMALL = ["--steps", "3", "--width", "320", "--view-batch-size", "1", "--sync-batch-size", "1", "--device", "cpu"]
CASES = {
    "multidiffusion": ["panorama", PROMPT, "--method", "multidiffusion", *SMALL],
    "syncdiffusion": ["panorama", PROMPT, *SMALL],
    "circular-fast": ["panorama", PROMPT, "--circular", "--sync-mode", "fast", *SMALL],
    "layout-sdg": ["layout", "--background", PROMPT, "--box", "a lake", "0.3,0.4,0.7,1", "--sync-regions",
                   "--text", "a red sunset", *SMALL],
    # exact sync through a (random) ControlNet: each process's rows carry their own crops of the control image
    "controlnet-sync": ["panorama", PROMPT, "--controlnet", "{controlnet}", "--control-image", "{control}", *SMALL],
}  # fmt: skip
MISMATCHES = {  # per rank: what differs, and the part the error must name
    "prompt": ({"0": ["panorama", PROMPT], "1": ["panorama", "a desert"]}, "prompt"),
    "seed": ({"0": ["panorama", PROMPT], "1": ["panorama", PROMPT, "--seed", "1"]}, "seed"),
}


@given(st.integers(0, 300), st.integers(1, 9))
def test_shares_are_contiguous_balanced_and_cover_every_item(n: int, size: int) -> None:
    shares = [Workers(rank, size).share(n) for rank in range(size)]
    assert [k for share in shares for k in share] == list(range(n))  # disjoint, in order, covering
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert all(Workers(0, size).owner(k, n) == r for r, share in enumerate(shares) for k in share)


def test_one_process_map_rows_replaces_only_the_items_rows() -> None:
    stack = torch.arange(12.0).reshape(6, 2)
    items = [slice(0, 2), torch.tensor([4])]
    out = Workers().map_rows(lambda k: -stack[items[k]] - k, items, stack.clone())
    assert torch.equal(out, torch.tensor([[0.0, -1], [-2, -3], [4, 5], [6, 7], [-9, -10], [10, 11]]))


def test_collectives_across_three_processes(tmp_path: Path, primitives_script: str, launchers: tuple) -> None:
    spawn, _ = launchers
    processes = spawn([primitives_script, str(tmp_path / "out")], 3, tmp_path)
    for p in processes:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
    reports = [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(3)]
    for report in reports:
        assert report["size"] == 3 and all(report["checks"].values()), report["checks"]
    for n in ("13", "2", "1", "0"):  # every item computed exactly once, by its owner
        assert sorted(k for report in reports for k in report["computed"].get(n, [])) == list(range(int(n)))
    assert reports[0]["computed"].get("1", []) == [] == reports[0]["computed"].get("2", [])  # fewer items: idle


def _run_cases(
    cases: list, directory: Path, script: str, n: int | None, launchers: tuple
) -> tuple[list[list[dict]], list[str]]:
    """Run ``cases`` in one launch of ``n`` processes (accelerate for 2, torchrun's environment by hand for 3;
    None: one plain process); each rank's results and stderr (the hand launcher's only)."""
    spawn, accelerate = launchers
    directory.mkdir()
    (directory / "cases.json").write_text(json.dumps(cases))
    command = [script, "cases.json", "status"]
    stderrs = []
    if n == 2:
        done = accelerate(command, 2, directory)
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        for p in spawn(command, n or 1, directory):
            _, stderr = p.communicate(timeout=600)
            assert p.returncode == 0, stderr[-3000:]
            stderrs.append(stderr)
    ranks = range(n or 1)
    return [json.loads((directory / f"status.{r}").read_text()) for r in ranks], stderrs


def _edges(root: Path) -> str:
    """A 320 x 64 control image: stripes in the lower half (an edge map's shape)."""
    pixels = np.zeros((64, 320, 3), np.uint8)
    pixels[32:, ::8] = 255
    Image.fromarray(pixels).save(root / "edges.png")
    return str(root / "edges.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, runs_script: str, launchers: tuple) -> dict:
    """Every case in one plain process, then in 2 and 3 processes with ``--window-parallel`` (and the mismatched
    cases in the 3-process launch)."""
    root = tmp_path_factory.mktemp("window-parallel")
    files = {"controlnet": str(save_tiny_controlnet(bundled("sd"), root / "controlnet")), "control": _edges(root)}
    single = [[a.format(**files) for a in [*args, "--out", f"{name}.png"]] for name, args in CASES.items()]
    parallel = [[*args, "--window-parallel"] for args in single]
    mismatched = [{r: [*a, *SMALL, "--window-parallel"] for r, a in case.items()} for case, _ in MISMATCHES.values()]
    for case in mismatched:
        case["2"] = case["0"]
    results = {1: _run_cases(single, root / "1", runs_script, None, launchers)}
    results[2] = _run_cases(parallel, root / "2", runs_script, 2, launchers)
    results[3] = _run_cases([*parallel, *mismatched], root / "3", runs_script, 3, launchers)
    return {"root": root, "results": results}


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("name", list(CASES))
def test_split_run_writes_the_same_png_bytes(runs: dict, name: str, processes: int) -> None:
    root, results = runs["root"], runs["results"]
    case = list(CASES).index(name)
    single = (root / "1" / f"{name}.png").read_bytes()
    assert (root / str(processes) / f"{name}.png").read_bytes() == single
    ranks = [status[case] for status in results[processes][0]]
    assert [r["status"] for r in ranks] == [0] * processes
    calls = [r["predict"] for r in ranks]
    assert sum(calls) == results[1][0][0][case]["predict"]  # the single run's model calls, each made once
    assert max(calls) < sum(calls)  # shared: no process made them all
    assert [r["save"] for r in ranks] == [1] + [0] * (processes - 1)  # rank 0 alone writes


def test_only_rank_0_reports(runs: dict) -> None:
    stderrs = runs["results"][3][1]
    assert "panorama (SyncDiffusion)" in stderrs[0] and "layout (" in stderrs[0]
    for stderr in stderrs[1:]:
        assert "panorama (" not in stderr and "layout (" not in stderr and "using the bundled" not in stderr
    written = sorted(p.name for p in (runs["root"] / "3").iterdir() if p.suffix == ".png")
    assert written == sorted(f"{name}.png" for name in CASES)


@pytest.mark.parametrize("what", list(MISMATCHES))
def test_mismatched_arguments_are_refused_at_the_start(runs: dict, what: str) -> None:
    case = len(CASES) + list(MISMATCHES).index(what)
    results, stderrs = runs["results"][3]
    assert [status[case] for status in results] == [{"status": 2, "predict": 0, "save": 0}] * 3
    line = f"--window-parallel: process 1 was given another {MISMATCHES[what][1]}"
    for stderr in stderrs:
        assert line in stderr and "Traceback" not in stderr


def _wait_for(path: Path, processes: list, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "the run never started"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_lost_process_ends_the_run_with_one_line_and_no_file(tmp_path: Path, how: str, launchers: tuple) -> None:
    spawn, _ = launchers
    args = ["-m", "syncguide.cli.main", "panorama", PROMPT, *SMALL, "--steps", "50", "--window-parallel"]
    args += ["--preview", "preview", "--preview-every", "1", "--parallel-timeout", "4", "--out", "out.png"]
    processes = spawn(args, 2, tmp_path)
    try:
        _wait_for(tmp_path / "preview" / "step_001.png", processes)  # sampling has started
        processes[1].send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        _, stderr = processes[0].communicate(timeout=120)
    finally:
        for p in processes:
            p.kill()
            p.communicate()
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert processes[0].returncode == 1
    assert lines[-1].startswith("syncguide panorama: error: window parallelism: process 0 of 2 lost the run")
    assert "Traceback" not in stderr
    assert not (tmp_path / "out.png").exists() and not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window-parallel", "--device", "cuda:1"], "--device: with --window-parallel each process"),
        (["--parallel-timeout", "0"], "--parallel-timeout: must be a positive number"),
        (["--parallel-timeout", "inf"], "--parallel-timeout: must be a positive number"),
    ],
)
def test_bad_parallel_options_are_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main(["panorama", PROMPT, "--out", str(tmp_path / "o.png"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.png").exists()


def test_a_batch_item_may_not_ask_for_window_parallelism(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "m.jsonl"
    item = {"output": "a.png", "command": "panorama", "args": [PROMPT, "--window-parallel"], "meta": {}}
    manifest.write_text(json.dumps(item) + "\n")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out")]) == 2
    assert "--window-parallel: not an item argument" in capsys.readouterr().err
