"""``generate`` and ``finetune-clip`` on bad input: one line, exit 2, nothing written, before any long work.

Wrong kinds of model (checked from their files), CLIPs that cannot be had, corrupt training images, non-finite and
huge numbers, too many steps; and the samples of ``generate`` depend on (seed, index) only, not the batch size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from syncguide.cli.main import build_parser
from syncguide.errors import SettingError
from syncguide.modelkind import CLIP, NOISE_AWARE_CLIP, OTHER, STABLE_DIFFUSION, UNCONDITIONAL, model_kind
from test_cli import run_cli


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every file under ``root`` with its size and modification time, and every directory (a write probe, created
    and removed at once, may touch a directory's time)."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def assert_one_line(capsys: pytest.CaptureFixture, command: str, option: str, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    prefixes = (f"syncguide {command}: error: {option}:", f"syncguide {command}: error: argument {option}:")
    assert lines[0].startswith(prefixes), lines[0]  # ours, or argparse's for a value its type refuses
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory, tiny_ddpm_dir: Path, tiny_clip_dir: Path, tiny_dir: Path):
    """Model directories of every kind, and broken ones: name -> path."""
    root = tmp_path_factory.mktemp("kinds")
    paths = {"ddpm": tiny_ddpm_dir, "clip": tiny_clip_dir, "sd": tiny_dir, "missing": root / "missing"}
    (root / "random").mkdir()
    (root / "random" / "notes.txt").write_text("not a model")
    paths["random"] = root / "random"
    paths["file"] = root / "random" / "notes.txt"
    paths["unet-only"] = tiny_ddpm_dir / "unet"
    no_weights = shutil.copytree(tiny_ddpm_dir, root / "no-weights")
    for weights in (no_weights / "unet").glob("*.safetensors"):
        weights.unlink()
    paths["no-weights"] = no_weights
    bad_json = root / "bad-json"
    bad_json.mkdir()
    (bad_json / "model_index.json").write_text("{not json")
    paths["bad-json"] = bad_json
    noise_aware = root / "noise-aware"
    noise_aware.mkdir()
    (noise_aware / "noise_aware.json").write_text(json.dumps({"base": str(tiny_clip_dir), "hidden": 8}))
    (noise_aware / "noise_aware.safetensors").write_bytes(b"")
    paths["noise-aware"] = noise_aware
    orphan = root / "orphan"  # noise-aware, but its base CLIP is gone
    orphan.mkdir()
    (orphan / "noise_aware.json").write_text(json.dumps({"base": str(root / "gone"), "hidden": 8}))
    (orphan / "noise_aware.safetensors").write_bytes(b"")
    paths["orphan"] = orphan
    return paths


def test_model_kind_reads_the_files(kinds) -> None:
    expected = {"ddpm": UNCONDITIONAL, "sd": STABLE_DIFFUSION, "clip": CLIP, "noise-aware": NOISE_AWARE_CLIP}
    assert {name: model_kind(kinds[name]) for name in expected} == expected
    assert {model_kind(kinds[name]) for name in ("random", "file", "unet-only", "bad-json")} == {OTHER}
    assert model_kind(kinds["no-weights"]) == UNCONDITIONAL  # the right kind; expect_kind names what is missing


GENERATE_MODELS = [
    ("sd", ["StableDiffusionPipeline", "unconditional DDPM pipeline", "panorama"]),
    ("random", ["no model files"]),
    ("missing", ["does not exist"]),
    ("file", ["a file, not a model directory"]),
    ("clip", ["transformers CLIPModel"]),
    ("unet-only", ["single diffusers UNet2DModel, not a pipeline"]),
    ("no-weights", ["has no weights in unet/"]),
    ("bad-json", ["not valid JSON"]),
]


@pytest.mark.parametrize(("name", "words"), GENERATE_MODELS, ids=[name for name, _ in GENERATE_MODELS])
def test_generate_refuses_a_wrong_kind_of_model(kinds, tmp_path, capsys, name: str, words: list[str]) -> None:
    before = snapshot(tmp_path)
    argv = ["generate", "--model", str(kinds[name]), "--n", "1", "--steps", "1", "--out", str(tmp_path / "s")]
    assert run_cli(argv) == 2
    assert_one_line(capsys, "generate", "--model", str(kinds[name]), *words)
    assert snapshot(tmp_path) == before


FINETUNE_MODELS = [
    ("--diffusion", "sd", ["StableDiffusionPipeline", "unconditional DDPM pipeline"]),
    ("--diffusion", "random", ["no model files"]),
    ("--diffusion", "missing", ["does not exist"]),
    ("--diffusion", "clip", ["transformers CLIPModel"]),
    ("--clip", "ddpm", ["DDPMPipeline", "CLIPModel"]),
    ("--clip", "sd", ["StableDiffusionPipeline"]),
    ("--clip", "random", ["no model files"]),
    ("--clip", "missing", ["does not exist"]),
    ("--clip", "noise-aware", ["noise-aware CLIP", "plain CLIP"]),
]


@pytest.mark.parametrize(
    ("option", "name", "words"), FINETUNE_MODELS, ids=[f"{o[2:]}-{n}" for o, n, _ in FINETUNE_MODELS]
)
def test_finetune_clip_refuses_a_wrong_kind_of_model(kinds, tmp_path, capsys, option, name, words) -> None:
    given = {"--clip": str(kinds["clip"]), "--diffusion": str(kinds["ddpm"]), option: str(kinds[name])}
    before = snapshot(tmp_path)
    argv = [
        "finetune-clip",
        *[x for pair in given.items() for x in pair],
        "--steps",
        "1",
        "--out",
        str(tmp_path / "ft"),
    ]
    assert run_cli(argv) == 2
    assert_one_line(capsys, "finetune-clip", option, str(kinds[name]), *words)
    assert snapshot(tmp_path) == before


CLIPS = [
    ("missing", ["does not exist", "open_clip:ARCH/TAG"]),
    ("random", ["no model files"]),
    ("ddpm", ["DDPMPipeline"]),
    ("orphan", ["base CLIP", "does not exist"]),
    ("open_clip:RN51/openai", ["no architecture 'RN51'"]),
    ("open_clip:RN50/nonsense", ["no pretrained weights 'nonsense'", "openai"]),
    ("not-a/real-clip", ["not in the Hugging Face cache", "offline (HF_HUB_OFFLINE=1)"]),
    ("open_clip:RN50x16/openai", ["weights from the hub", "timm/resnet50x16_clip.openai", "not in the Hugging Face"]),
]


@pytest.mark.parametrize(("spec", "words"), CLIPS, ids=[spec for spec, _ in CLIPS])
def test_generate_refuses_a_clip_that_cannot_load(kinds, monkeypatch, tmp_path, capsys, spec, words) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # never made
    clip = str(kinds.get(spec, spec))
    before = snapshot(tmp_path)
    argv = ["generate", "--model", str(kinds["ddpm"]), "--clip", clip, "--text", "snow", "--n", "1", "--steps", "1",
            "--out", str(tmp_path / "s")]  # fmt: skip
    assert run_cli(argv) == 2
    assert_one_line(capsys, "generate", "--clip", clip, *words)
    assert snapshot(tmp_path) == before


def _images(directory: Path, n: int = 4) -> Path:
    directory.mkdir()
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"{i}.png")
    return directory


@pytest.mark.parametrize("damage", ["truncated", "not-an-image", "empty"])
def test_finetune_clip_names_a_corrupt_training_image_before_training(kinds, tmp_path, capsys, damage) -> None:
    data = _images(tmp_path / "data")
    good = (data / "0.png").read_bytes()
    bad = data / "sub" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes({"truncated": good[: len(good) // 2], "not-an-image": b"hello", "empty": b""}[damage])
    stale = tmp_path / "ft" / "checkpoint" / "state.json"  # --restart would remove it: not before the data is read
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"step": 1}))
    before = snapshot(tmp_path)
    argv = ["finetune-clip", "--clip", str(kinds["clip"]), "--diffusion", str(kinds["ddpm"]), "--data", str(data),
            "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "ft"), "--restart"]  # fmt: skip
    assert run_cli(argv) == 2
    assert_one_line(capsys, "finetune-clip", "--data", str(bad))
    assert snapshot(tmp_path) == before


NON_FINITE = [
    ("generate", "--eta", "nan"),
    ("generate", "--eta", "inf"),
    ("generate", "--eta", "-1"),
    ("generate", "--text-weight", "inf"),
    ("generate", "--image-weight", "nan"),
    ("generate", "--guidance-steps", "nan,1"),
    ("generate", "--guidance-steps", "0,inf"),
    ("finetune-clip", "--lr", "inf"),
    ("finetune-clip", "--lr", "nan"),
    ("finetune-clip", "--lr", "-inf"),
    ("finetune-clip", "--lr", "0"),
]


def _argv(command: str, kinds: dict, out: Path) -> list[str]:
    if command == "generate":
        return ["generate", "--model", str(kinds["ddpm"]), "--clip", str(kinds["clip"]), "--text", "snow",
                "--n", "1", "--steps", "1", "--out", str(out)]  # fmt: skip
    return ["finetune-clip", "--clip", str(kinds["clip"]), "--diffusion", str(kinds["ddpm"]), "--steps", "1",
            "--out", str(out)]  # fmt: skip


@pytest.mark.parametrize(("command", "option", "value"), NON_FINITE, ids=[f"{o[2:]}={v}" for _, o, v in NON_FINITE])
def test_non_finite_numbers_are_refused(kinds, tmp_path, capsys, command, option, value) -> None:
    before = snapshot(tmp_path)
    assert run_cli([*_argv(command, kinds, tmp_path / "out"), f"{option}={value}"]) == 2
    assert_one_line(capsys, command, option, value)
    assert snapshot(tmp_path) == before


HUGE = [
    ("generate", ["--n", "100000", "--batch-size", "100000"], "--n", "10,000"),
    ("generate", ["--batch-size", "100000"], "--batch-size", "256"),
    ("generate", ["--n", "0"], "--n", "got 0"),
    ("generate", ["--start", "-1"], "--start", ">= 0"),
    ("generate", ["--steps", "1001"], "--steps", "1000"),
    ("generate", ["--steps", "100000", "--scheduler", "ddim"], "--steps", "got 100000"),
    ("finetune-clip", ["--batch-size", "100000"], "--batch-size", "1,024"),
    ("finetune-clip", ["--batch-size", "1"], "--batch-size", "got 1"),
    ("finetune-clip", ["--steps", "1000000000000"], "--steps", "10,000,000"),
    ("finetune-clip", ["--seed", "-1"], "--seed", "2^64 - 1"),
]


@pytest.mark.parametrize(("command", "extra", "option", "word"), HUGE, ids=[" ".join(e) for _, e, _, _ in HUGE])
def test_huge_and_impossible_sizes_are_refused_before_any_work(kinds, tmp_path, capsys, command, extra, option, word):
    before = snapshot(tmp_path)
    assert run_cli([*_argv(command, kinds, tmp_path / "out"), *extra]) == 2
    assert_one_line(capsys, command, option, word)
    assert snapshot(tmp_path) == before


def test_help_states_the_limits() -> None:
    from syncguide.cli import finetune, generate
    from syncguide.cli.parser import subcommands
    from syncguide.finetune_clip import MAX_BATCH_SIZE

    assert finetune.MAX_BATCH_SIZE == MAX_BATCH_SIZE  # the command line states the library's limit
    parser = build_parser()
    subparsers = subcommands(parser)
    text = subparsers["generate"].format_help() + subparsers["finetune-clip"].format_help()
    text = " ".join(text.split())
    for limit in (
        f"1 .. {generate.MAX_N:,}",
        f"1 .. {generate.MAX_BATCH_SIZE}",
        f"2 .. {MAX_BATCH_SIZE}",
        "1 .. 10,000,000",
    ):
        assert limit in text, limit


def _checkpoint_state(kinds: dict, data: Path, **changes) -> dict:
    settings = {"clip": str(kinds["clip"]), "data": str(data), "diffusion": str(kinds["ddpm"]), "batch_size": 2,
                "lr": 1e-4, "seed": 0}  # fmt: skip
    return {"step": 4, **settings, **changes}


@pytest.mark.parametrize(
    ("changes", "steps", "words"), [({"lr": 0.5}, "6", ["has settings"]), ({}, "2", ["at step 4", "past the 2 steps"])]
)
def test_finetune_clip_refuses_a_checkpoint_it_cannot_resume_before_loading(
    kinds, tmp_path, capsys, changes, steps, words
):
    data = _images(tmp_path / "data")
    state = tmp_path / "ft" / "checkpoint" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps(_checkpoint_state(kinds, data, **changes)))
    before = snapshot(tmp_path)
    argv = ["finetune-clip", "--clip", str(kinds["clip"]), "--diffusion", str(kinds["ddpm"]), "--data", str(data),
            "--batch-size", "2", "--steps", steps, "--out", str(tmp_path / "ft")]  # fmt: skip
    assert run_cli(argv) == 2
    assert_one_line(capsys, "finetune-clip", "--out", "--restart", *words)
    assert snapshot(tmp_path) == before


def test_finetune_clip_stops_when_the_loss_diverges_and_exports_nothing(kinds, tmp_path, capsys) -> None:
    data = _images(tmp_path / "data")
    argv = ["finetune-clip", "--clip", str(kinds["clip"]), "--diffusion", str(kinds["ddpm"]), "--data", str(data),
            "--batch-size", "2", "--steps", "4", "--lr", "1e30", "--out", str(tmp_path / "ft")]  # fmt: skip
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("syncguide finetune-clip: error: --lr: training diverged") and "Traceback" not in err
    assert not (tmp_path / "ft" / "noise_aware.safetensors").exists()


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_a_sample_is_the_same_for_any_batch_size(kinds, reference_image, tmp_path, scheduler: str) -> None:
    """DDPM draws fresh noise every step, DDIM with eta > 0 too; content guidance noises its reference every step."""
    common = ["generate", "--model", str(kinds["ddpm"]), "--clip", str(kinds["clip"]), "--text", "snow",
              "--content", str(reference_image), "--steps", "3", "--scheduler", scheduler, "--eta", "1",
              "--seed", "7"]  # fmt: skip
    runs = {}
    for name, extra in (("one", ["--n", "3", "--batch-size", "1"]), ("three", ["--n", "3", "--batch-size", "3"]),
                        ("alone", ["--start", "1", "--n", "1"])):  # fmt: skip
        runs[name] = tmp_path / name
        assert run_cli([*common, *extra, "--out", str(runs[name])]) == 0
    assert sorted(p.name for p in runs["alone"].iterdir()) == ["sample-7-001.png"]
    for index in range(3):
        a, b = (_pixels(runs[r] / f"sample-7-{index:03d}.png") for r in ("one", "three"))
        assert np.abs(a - b).max() <= 1, index  # float round-off of batched kernels only
    np.testing.assert_allclose(
        _pixels(runs["alone"] / "sample-7-001.png"), _pixels(runs["one"] / "sample-7-001.png"), atol=1
    )
    first, second = (_pixels(runs["three"] / f"sample-7-{i:03d}.png") for i in (0, 1))
    assert np.abs(first - second).mean() > 10  # different indices: different noise


@pytest.fixture(scope="module")
def reference_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "ref.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def test_pipeline_per_sample_generators_make_samples_independent_of_their_batch(kinds) -> None:
    from syncguide.sdg_pipeline import SemanticGuidancePipeline, sample_generators

    pipe = SemanticGuidancePipeline.from_pretrained(kinds["ddpm"])
    pipe.set_progress_bar_config(disable=True)

    def run(indices: list[int]) -> torch.Tensor:
        gens = sample_generators(5, indices)
        return pipe(len(indices), generator=gens, num_inference_steps=3, output_type="pt").images

    batch = run([0, 1, 2])
    alone = torch.cat([run([i]) for i in range(3)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)
    assert not torch.allclose(batch[0], batch[1])
    with pytest.raises(SettingError, match="generator"):
        pipe(2, generator=sample_generators(5, [0]), num_inference_steps=1)
