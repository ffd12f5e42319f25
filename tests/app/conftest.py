"""A launched web app on localhost (demo models, CPU) shared by the app tests, and a Gradio client for it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, Path]]:
    """``(url, service, outputs)`` of ``syncguide app`` on the demo models, serving in this process."""
    from syncguide.cli.app import launch
    from syncguide.cli.main import build_parser

    outputs = tmp_path_factory.mktemp("app-outputs")
    argv = ["app", "--port", str(free_port()), "--outputs", str(outputs), "--max-steps", "200", "--device", "cpu"]
    page, service = launch(build_parser().parse_args(argv), block=False)
    yield f"http://127.0.0.1:{page.server_port}/", service, outputs
    page.close()


@pytest.fixture()
def client(app):
    from gradio_client import Client

    return Client(app[0], verbose=False)
