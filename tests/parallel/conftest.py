"""Launchers for window-parallel runs on the CPU (gloo): torchrun's environment set by hand, or accelerate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn(command: list[str], n: int, cwd: Path, **popen) -> list[subprocess.Popen]:
    """``n`` processes of one run, each given the environment torchrun gives its workers (RANK, WORLD_SIZE,
    MASTER_ADDR/PORT, ...), one thread each, with their own stdout and stderr."""
    port = str(free_port())
    processes = []
    for rank in range(n):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(n),
            "LOCAL_WORLD_SIZE": str(n),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, *command],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                **popen,
            )
        )
    return processes


def accelerate(command: list[str], n: int, cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes n COMMAND`` (torchrun-style; gloo without CUDA)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*launch, *command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def launchers() -> tuple:
    """(:func:`spawn`, :func:`accelerate`)."""
    return spawn, accelerate


@pytest.fixture(scope="session")
def runs_script() -> str:
    return str(HERE / "runs.py")


@pytest.fixture(scope="session")
def primitives_script() -> str:
    return str(HERE / "primitives.py")
