"""Bad numbers, missing devices, interrupts: one line, the right exit status, nothing (half-)written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from syncguide.atomic import write_atomic
from syncguide.devices import available_devices, resolve_device
from syncguide.errors import SettingError
from syncguide.pngmeta import png_bytes
from test_cli import FAST, run_cli


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--cfg", "nan"),
        ("--cfg", "inf"),
        ("--sync-weight", "nan"),
        ("--sync-weight", "inf"),
        ("--sync-decay", "nan"),
        ("--eta", "nan"),
        ("--text-weight", "inf"),
        ("--text-weight", "nan"),
        ("--style-weight", "-inf"),
    ],
)
def test_non_finite_numbers_are_refused(tiny_dir, tmp_path, capsys, option: str, value: str) -> None:
    out = tmp_path / "out.png"
    argv = ["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(out), f"{option}={value}"]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"syncguide panorama: error: {option}:"), err
    assert "finite" in err and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="needs a CPU-only host")
@pytest.mark.parametrize("name", ["cuda", "cuda:99", "mps", "meta"])
def test_absent_devices_are_refused_naming_the_available_ones(tiny_dir, tmp_path, capsys, name: str) -> None:
    with pytest.raises(SettingError, match=f"{name} is not available on this machine .available: cpu, auto."):
        resolve_device(name)
    assert (
        run_cli(["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(tmp_path / "x.png"), "--device", name])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device:" in err and not list(tmp_path.iterdir())
    assert available_devices()[0] == "cpu" and resolve_device("cpu") == torch.device("cpu")


def test_written_files_get_the_mode_a_plain_open_would(tmp_path) -> None:
    before = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
        (tmp_path / "plain.bin").write_bytes(b"x")
    finally:
        os.umask(before)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == (tmp_path / "plain.bin").stat().st_mode & 0o777 == 0o644


def test_png_parameters_are_strict_json() -> None:
    from PIL import Image

    with pytest.raises(ValueError, match="JSON compliant"):
        png_bytes(Image.new("RGB", (4, 4)), {"cfg": float("nan")})


@pytest.mark.parametrize(
    ("sig", "status", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_a_signal_mid_run_is_one_line_and_leaves_no_file(tiny_dir, tmp_path, sig, status: int, word: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "syncguide.cli.main", "panorama", "a", "--model", str(tiny_dir), "--height", "64"]
    argv += ["--width", "128", "--stride", "4", "--perceptual", "lpips-random", "--steps", "400"]
    proc = subprocess.Popen([*argv, "--out", str(out / "p.png")], stderr=subprocess.PIPE, cwd=tmp_path)
    seen = bytearray()

    def read() -> None:
        while chunk := proc.stderr.read1(256):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while b"2/400" not in seen and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert b"2/400" in seen, bytes(seen)[-500:]  # sampling has started
    proc.send_signal(sig)
    assert proc.wait(timeout=180) == status
    reader.join(timeout=10)
    lines = [line for line in bytes(seen).decode().replace("\r", "\n").splitlines() if line.startswith("syncguide")]
    assert lines == [f"syncguide panorama: {word}"], bytes(seen)[-800:]
    assert b"Traceback" not in seen and list(out.iterdir()) == []


@pytest.mark.parametrize("weight", [float("nan"), float("inf")])
def test_guidance_weights_must_be_finite(weight: float) -> None:
    from syncguide.guidance.semantic import Guidance

    with pytest.raises(ValueError, match="weight must be finite"):
        Guidance(weight=weight)


@pytest.mark.parametrize(
    "extra",
    [["--steps", "1000"], ["--steps", "1001"], ["--steps", "1000000000"], ["--scheduler", "pndm", "--steps", "1"]],
)
def test_step_counts_the_scheduler_cannot_run_are_refused_up_front(tiny_dir, tmp_path, capsys, extra) -> None:
    argv = ["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(tmp_path / "x.png"), *extra]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("syncguide panorama: error: --steps:"), err
    assert list(tmp_path.iterdir()) == []


def test_the_pipeline_refuses_too_many_steps_before_any_work(pipe) -> None:
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(SettingError, match=r"^num_inference_steps "):
            pipe("a", height=64, width=128, stride=4, num_inference_steps=1001, sync_weight=0.0)
    finally:
        hook.remove()
    assert calls == []


@pytest.mark.parametrize(("option", "value"), [("--width", "400000"), ("--height", "200000"), ("--width", "8000000")])
def test_huge_sizes_are_refused_before_anything_is_allocated(tiny_dir, tmp_path, capsys, option, value) -> None:
    argv = ["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(tmp_path / "x.png"), option, value]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"syncguide panorama: error: {option}: must be <= 32768; got {value}"
    assert list(tmp_path.iterdir()) == []


def test_output_paths_that_cannot_be_written_are_refused_up_front(tiny_dir, tmp_path, capsys) -> None:
    (tmp_path / "a.png").mkdir()
    cases = [(tmp_path / "a.png", "is a directory"), (tmp_path / ("x" * 300 + ".png"), "longer than this file system")]
    for out, rule in cases:
        assert run_cli(["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("syncguide panorama: error: --out:") and rule in err
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"] and not any((tmp_path / "a.png").iterdir())


def test_an_unwritable_directory_is_refused(tmp_path, monkeypatch) -> None:
    """(As root a read-only mode does not stop writes: the probe's failure is simulated.)"""
    from syncguide.cli import io
    from syncguide.errors import UsageError

    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    with pytest.raises(UsageError, match=r"--out: cannot write in .*: Permission denied"):
        io.check_output(tmp_path / "x.png", overwrite=False)


def _bomb_png(path) -> str:
    """A PNG whose header claims 100000 x 100000 pixels, with almost no data (nothing is decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )
    return str(path)


def _truncated_png(path) -> str:
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    return str(path)


@pytest.mark.parametrize("make", [_bomb_png, _truncated_png], ids=["bomb", "truncated"])
@pytest.mark.parametrize("use", ["--style", "--region"])
def test_huge_or_broken_images_are_one_line(tiny_dir, tmp_path, capsys, make, use) -> None:
    image = make(tmp_path / "in.png")
    out = tmp_path / "x.png"
    if use == "--style":
        argv = ["panorama", "a", "--model", str(tiny_dir), *FAST, "--style", image, "--clip", "demo"]
    else:
        argv = ["layout", "--background", "a", "--region", "b", image, "--model", str(tiny_dir), *FAST]
    assert run_cli([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and use in err, err
    if make is _bomb_png:
        assert "more than the 50,000,000" in err
    assert not out.exists()


def test_seeds_outside_the_generator_range_are_refused(tiny_dir, tmp_path, capsys) -> None:
    for value in ("-1", str(2**64), "1e3"):
        argv = ["panorama", "a", "--model", str(tiny_dir), *FAST, "--out", str(tmp_path / "x.png"), f"--seed={value}"]
        assert run_cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"syncguide panorama: error: argument --seed: must be an integer in [0, 2^64 - 1]; got {value!r}"
    assert run_cli(["demo", "world", f"--seed={2**64 - 1}", "--width", "128", "--out", str(tmp_path / "w.png")]) == 0


def test_a_prompt_longer_than_the_text_encoder_reads_is_warned_about_once(pipe, tiny_dir, tmp_path, capsys) -> None:
    limit = pipe.tokenizer.model_max_length
    long_prompt = " ".join(["mountains"] * (limit + 10))
    with pytest.warns(UserWarning, match=f"has {limit + 10 + 2} tokens; the text encoder reads the first {limit}"):
        pipe.backbone.encode_prompt([long_prompt, long_prompt], None)
    argv = [sys.executable, "-m", "syncguide.cli.main", "panorama", long_prompt, "--model", str(tiny_dir), *FAST]
    argv += ["--method", "multidiffusion", "--out", str(tmp_path / "x.png")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    warned = [line for line in done.stderr.replace("\r", "\n").splitlines() if "warning" in line.lower()]
    assert len(warned) == 1 and warned[0].startswith("syncguide: warning: the prompt"), warned
    assert f"reads the first {limit}" in warned[0]


def test_sampling_that_overflows_stops_naming_the_step(pipe, random_lpips, tiny_dir, tmp_path, capsys) -> None:
    from syncguide.errors import NonFiniteError

    with pytest.raises(NonFiniteError, match="NaN or infinite at step 1 of 3: a guidance or sync weight too high"):
        pipe("a", height=64, width=128, stride=4, num_inference_steps=3, sync_weight=1e30, perceptual_loss=random_lpips)
    out = tmp_path / "x.png"
    argv = ["panorama", "a", "--model", str(tiny_dir), *FAST, "--sync-weight", "1e30", "--out", str(out)]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("syncguide panorama: error: the latents became NaN or infinite at step 1 of 3")
    assert not out.exists()


def test_lpips_vgg_offline_without_its_weights_is_one_line_before_loading(
    tiny_dir, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # in-process: the exit status and stderr are main()'s
    argv = ["panorama", "a", "--model", str(tiny_dir), "--height", "64"]
    argv += ["--width", "128", "--stride", "4", "--steps", "2", "--out", str(tmp_path / "x.png")]
    assert run_cli(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("syncguide panorama: error: --perceptual: lpips-vgg needs")
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth") in err and "--lpips-weights" in err
    assert not (tmp_path / "x.png").exists()


def test_lpips_weights_file_gives_the_sync_loss(tiny_dir, tmp_path, capsys, random_lpips) -> None:
    common = ["panorama", "a", "--model", str(tiny_dir), "--height", "64", "--width", "128", "--stride", "4"]
    common += ["--steps", "2", "--sync-steps", "1"]
    assert run_cli([*common, "--lpips-weights", str(tmp_path / "no.pth"), "--out", str(tmp_path / "x.png")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"syncguide panorama: error: --lpips-weights: no such file: {tmp_path / 'no.pth'}"
    )
    state = {f"features.{name.split('.', 1)[1]}": v for name, v in random_lpips.net.state_dict().items()}
    torch.save(state, tmp_path / "vgg16.pth")
    given, random = tmp_path / "given.png", tmp_path / "random.png"
    assert run_cli([*common, "--lpips-weights", str(tmp_path / "vgg16.pth"), "--out", str(given)]) == 0
    assert run_cli([*common, "--perceptual", "lpips-random", "--out", str(random)]) == 0
    import numpy as np
    from PIL import Image  # the file holds lpips-random's (seeded) trunk: the same sync loss, the same pixels

    assert np.array_equal(np.asarray(Image.open(given)), np.asarray(Image.open(random)))


def test_generate_refuses_a_file_name_for_its_sample_directory(tmp_path, capsys) -> None:
    out = tmp_path / "samples.png"
    assert run_cli(["generate", "--text", "snow", "--n", "1", "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("syncguide generate: error: --out: is the directory for the samples") and not out.exists()


@pytest.mark.parametrize(("metric", "noted"), [("intra-lpips", False), ("fid", True)])
def test_eval_report_has_no_dangling_sentence(metric: str, noted: bool) -> None:
    from syncguide.evaluation.report import markdown

    entry = {"value": 1.0, "ci": (0.5, 1.5)}
    results = {
        "methods": {"MultiDiffusion": {"n": 2, "sync_weight": 0.0, "metrics": {metric: entry}}},
        "crop": 64,
        "n_references": 4,
        "networks": {},
    }
    text = markdown(results)
    if noted:
        assert "over panoramas unless noted: FID 95% bootstrap interval over panoramas." in text
    else:
        assert "confidence interval over panoramas.\n" in text and "unless noted" not in text


@pytest.mark.parametrize("width", ["50000000", "32769", "63"])
def test_demo_world_refuses_widths_outside_its_range(tmp_path, capsys, width: str) -> None:
    assert run_cli(["demo", "world", "--width", width, "--out", str(tmp_path / "w.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"syncguide demo world: error: --width: must be in [64, 32768]; got {width}"
    assert list(tmp_path.iterdir()) == []


def test_a_stretched_mask_is_one_warning_line(tiny_dir, tmp_path, recwarn) -> None:
    from PIL import Image

    from syncguide.cli.main import _one_line_warning

    Image.new("L", (4, 900), 255).save(tmp_path / "tall.png")
    Image.new("L", (256, 128), 255).save(tmp_path / "fits.png")
    base = ["layout", "--model", str(tiny_dir), *FAST, "--method", "multidiffusion", "--background", "sky"]
    assert run_cli([*base, "--region", "a", str(tmp_path / "tall.png"), "--out", str(tmp_path / "a.png")]) == 0
    stretched = [w for w in recwarn if "stretched" in str(w.message)]
    assert len(stretched) == 1
    line = _one_line_warning(stretched[0].message, stretched[0].category)
    assert line == (
        f"syncguide: warning: --region 'a': the mask {tmp_path / 'tall.png'} is 4 x 900 px, stretched 450.0x"
        " to the 128 x 64 canvas\n"
    )
    recwarn.clear()
    assert run_cli([*base, "--region", "a", str(tmp_path / "fits.png"), "--out", str(tmp_path / "b.png")]) == 0
    assert not [w for w in recwarn if "stretched" in str(w.message)]
