"""``syncguide eval``: per-method report from stored parameters, cached (resumable), split across processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from syncguide.cli.io import save_png
from syncguide.cli.main import main
from syncguide.demo.networks import demo_networks
from syncguide.evaluation.inputs import load_images
from syncguide.evaluation.records import crop_generator
from syncguide.metrics.crops import random_crops
from syncguide.metrics.fid import fid


def _eval(panoramas: Path, references: Path | None, out: Path, *extra: str) -> int:
    argv = ["eval", str(panoramas), "--out", str(out), "--device", "cpu", "--bootstrap", "5", *extra]
    return main([*argv, *(["--reference", str(references)] if references else [])])


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_report_per_method_with_every_metric(panorama_dir: Path, reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert _eval(panorama_dir, reference_dir, out) == 0
    results = _results(out)
    assert set(results["methods"]) == {"MultiDiffusion", "SyncDiffusion w=5"}
    expected = {"intra-lpips", "intra-style-sum", "intra-style-mean", "giqa", "fid", "kid", "clip-score", "judge"}
    for entry in results["methods"].values():
        assert entry["n"] == 6 and set(entry["metrics"]) == expected
        low, high = entry["metrics"]["intra-lpips"]["ci"]
        assert low <= entry["metrics"]["intra-lpips"]["value"] <= high
    assert set(results["networks"]) >= {"lpips", "style", "features", "clip", "judge"}
    table = (out / "results.md").read_text()
    assert "| MultiDiffusion | 6 |" in table and "| SyncDiffusion w=5 | 6 |" in table and "Networks:" in table
    for picture in ("metrics.png", "tradeoff.png"):
        with Image.open(out / picture) as image:
            assert image.width > 200 and image.height > 100


def test_fid_of_the_report_is_fid_of_the_random_crops(panorama_dir: Path, reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert _eval(panorama_dir, reference_dir, out, "--metrics", "fid") == 0
    networks = demo_networks()
    files = sorted(panorama_dir.glob("w0-*.png"))
    crops = torch.cat([random_crops(load_images([f]), 64, crop_generator(f)) for f in files])
    references = load_images(sorted(reference_dir.glob("*.png")))
    with torch.no_grad():
        expected = fid(networks.features(crops), networks.features(references))
    value = _results(out)["methods"]["MultiDiffusion"]["metrics"]["fid"]["value"]
    assert value == pytest.approx(expected, rel=1e-6)


def test_rerun_reuses_every_record(panorama_dir: Path, reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert _eval(panorama_dir, reference_dir, out) == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cache").rglob("*.safetensors")}
    first = _results(out)
    assert len(stamps) == 12 + 6
    assert _eval(panorama_dir, reference_dir, out) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").rglob("*.safetensors")} == stamps
    assert _results(out)["methods"] == first["methods"]


def test_identical_crops_score_zero_and_full_agreement(tmp_path: Path) -> None:
    from syncguide.demo.bundled import bundled
    from syncguide.demo.world import generate

    directory = tmp_path / "same"
    directory.mkdir()
    for seed in range(2):
        tile = generate(seed, 256)[0][:, :64]
        params = {"prompt": "a photo", "method": "multidiffusion", "model": str(bundled("sd"))}
        save_png(Image.fromarray(np.tile(tile, (1, 4, 1))), directory / f"{seed}.png", params, False)
    assert _eval(directory, None, tmp_path / "eval") == 0
    metrics = _results(tmp_path / "eval")["methods"]["MultiDiffusion"]["metrics"]
    assert metrics["intra-lpips"]["value"] == 0
    assert metrics["intra-style-sum"]["value"] == 0 and metrics["intra-style-mean"]["value"] == 0
    assert metrics["judge"]["value"] == 1


def _mixed(tmp_path: Path) -> Path:
    directory = tmp_path / "mixed"
    directory.mkdir()
    for width in (128, 192):
        save_png(Image.new("RGB", (width, 64)), directory / f"{width}.png", {"prompt": "x"}, False)
    return directory


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda t, p, r: (t / "empty", None, []), "PANORAMA_DIR: no .png files"),
        (lambda t, p, r: (_mixed(t), None, []), "PANORAMA_DIR: images must all have one size"),
        (lambda t, p, r: (p, t / "missing", []), "--reference: "),
        (lambda t, p, r: (p, p, []), "--reference: images must be 64x64"),
        (lambda t, p, r: (p, None, ["--metrics", "fid"]), "--reference: needed for fid"),
        (lambda t, p, r: (p, r, ["--bootstrap", "-1"]), "--bootstrap: must be >= 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    setup, message: str, panorama_dir: Path, reference_dir: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "empty").mkdir()
    panoramas, references, extra = setup(tmp_path, panorama_dir, reference_dir)
    out = tmp_path / "eval"
    assert _eval(panoramas, references, out, *extra) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("syncguide eval: error: ") and message in error and "\n" not in error
    assert not out.exists()


def test_prompt_list_and_foreign_out_dir(panorama_dir: Path, reference_dir: Path, tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of mountains\n")
    out = tmp_path / "eval"
    assert _eval(panorama_dir, None, out, "--prompts", str(prompts)) == 0
    assert {e["n"] for e in _results(out)["methods"].values()} == {3}
    prompts.write_text("a photo of the sea\n")
    assert _eval(panorama_dir, None, tmp_path / "other", "--prompts", str(prompts)) == 2
    assert "--prompts: no panorama" in capsys.readouterr().err
    assert _eval(panorama_dir, reference_dir, out) == 2  # out holds the evaluation of other inputs
    assert "--out:" in capsys.readouterr().err
    assert {e["n"] for e in _results(out)["methods"].values()} == {3}
    assert _eval(panorama_dir, reference_dir, out, "--overwrite") == 0
    assert {e["n"] for e in _results(out)["methods"].values()} == {6}


def test_two_processes_give_the_single_process_report(
    panorama_dir: Path, reference_dir: Path, tmp_path: Path, accelerate_launch
) -> None:
    assert _eval(panorama_dir, reference_dir, tmp_path / "one") == 0
    args = ["eval", str(panorama_dir), "--reference", str(reference_dir), "--out", str(tmp_path / "two")]
    process = accelerate_launch([*args, "--bootstrap", "5"], tmp_path)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    one, two = _results(tmp_path / "one"), _results(tmp_path / "two")
    for method, entry in one["methods"].items():
        for name, value in entry["metrics"].items():
            assert two["methods"][method]["metrics"][name]["value"] == pytest.approx(value["value"], rel=1e-5)
