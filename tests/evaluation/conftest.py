"""Fixtures for the evaluation commands: synthetic demo-world panoramas with stored parameters (no sampling)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syncguide.cli.io import save_png
from syncguide.demo.bundled import bundled
from syncguide.demo.world import generate

PROMPTS = ("a photo of mountains", "a landscape by a lake")


def panorama_parameters(prompt: str, seed: int, weight: float) -> dict:
    """What ``syncguide panorama`` would store for the bundled demo model (the parts eval reads)."""
    method = "multidiffusion" if weight == 0 else "syncdiffusion"
    return {"prompt": prompt, "seed": seed, "method": method, "sync_weight": weight, "model": str(bundled("sd"))}


def write_panoramas(directory: Path, weights=(0.0, 5.0), seeds=range(3), width: int = 256) -> Path:
    """Demo-world panoramas (64 x ``width``) saved as if generated with each sync weight."""
    directory.mkdir(parents=True, exist_ok=True)
    for w in weights:
        for p, prompt in enumerate(PROMPTS):
            for seed in seeds:
                image, _ = generate(1000 * p + seed + int(w), width)
                name = f"w{w:g}-p{p}-s{seed}.png"
                save_png(Image.fromarray(image), directory / name, panorama_parameters(prompt, seed, w), False)
    return directory


def write_references(directory: Path, n: int = 6) -> Path:
    """Window-size (64 x 64) demo-world images."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _ = generate(5000 + i, 256)
        Image.fromarray(np.ascontiguousarray(image[:, 64:128])).save(directory / f"ref-{i}.png")
    return directory


@pytest.fixture(scope="session")
def _panorama_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_panoramas(tmp_path_factory.mktemp("eval-inputs") / "panoramas")


@pytest.fixture(scope="session")
def _reference_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_references(tmp_path_factory.mktemp("eval-inputs") / "references")


@pytest.fixture
def panorama_dir(tmp_path: Path, _panorama_template: Path) -> Path:
    """:func:`write_panoramas`'s files, rendered once per session and copied: each test may change its own."""
    return Path(shutil.copytree(_panorama_template, tmp_path / "panoramas"))


@pytest.fixture
def reference_dir(tmp_path: Path, _reference_template: Path) -> Path:
    return Path(shutil.copytree(_reference_template, tmp_path / "references"))


@pytest.fixture(scope="session")
def accelerate_launch():
    """The function :func:`launch`."""
    return launch


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(args: list[str], cwd: Path, processes: int = 2, **popen) -> subprocess.Popen:
    """``accelerate launch --multi_gpu --num_processes N -m syncguide.cli.main ARGS`` (CPU: gloo), 1 thread each."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--main_process_port", str(_free_port())]  # pytest-xdist workers may launch at the same time
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [*command, "-m", "syncguide.cli.main", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )
