"""``syncguide reproduce``: manifest -> panoramas and references -> eval -> table, plots, strip; resumable."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from syncguide.cli.main import main
from syncguide.scaleout import read_manifest


def _reproduce(tiny_dir: Path, prompts: Path, out: Path, *extra: str) -> int:
    return main(
        [
            *("reproduce", "--model", str(tiny_dir), "--prompts", str(prompts), "--networks", "demo"),
            *("--perceptual", "lpips-random", "--seeds", "2", "--weights", "0", "5", "--references", "2"),
            *("--steps", "2", "--width", "128", "--device", "cpu", "--out", str(out), *extra),
        ]
    )


def test_protocol_end_to_end_and_rerun_does_no_work(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of mountains\na lake\n")
    out = tmp_path / "run"
    assert _reproduce(tiny_dir, prompts, out) == 0
    items = read_manifest(out / "manifest.jsonl")
    assert len(items) == 2 * (2 * 2 + 2)  # prompts x (weights x seeds + references)
    assert all((out / item.output).is_file() for item in items)
    with Image.open(out / "references" / "p00-s100000.png") as reference:
        assert reference.size == (64, 64)  # the tiny model's window
    results = json.loads((out / "eval" / "results.json").read_text())
    assert {m: e["n"] for m, e in results["methods"].items()} == {"MultiDiffusion": 4, "SyncDiffusion w=5": 4}
    assert results["n_references"] == 4
    readme = (out / "README.md").read_text()
    assert "| MultiDiffusion | 4 |" in readme and "strip.png" in readme
    with Image.open(out / "strip.png") as strip:  # 2 seeds x 2 methods, 128 px rows, one gap
        assert strip.height == 4 * 128 + 8 and strip.width == 150 + 2 * 128
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".png", ".safetensors")}
    stamps = {p: s for p, s in stamps.items() if p.parent.name in ("panoramas", "references", "cache")}
    capsys.readouterr()
    assert _reproduce(tiny_dir, prompts, out) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_different_protocol_needs_a_new_directory(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo\n")
    out = tmp_path / "run"
    (out).mkdir()
    (out / "manifest.jsonl").write_text('{"output": "x.png", "command": "panorama", "args": []}\n')
    assert _reproduce(tiny_dir, prompts, out) == 2
    assert "--out:" in capsys.readouterr().err
    assert main(["reproduce", "--model", str(tiny_dir), "--out", str(tmp_path / "x")]) == 2
    assert "--prompts: required with --model" in capsys.readouterr().err
    assert main(["reproduce", "--seeds", "1", "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
