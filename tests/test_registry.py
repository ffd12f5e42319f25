"""The registry of named resources: lookups, errors that list what is registered, plug-ins from entry points."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from syncguide import registry


@pytest.fixture
def isolated(monkeypatch):
    """The registry with its current registrations, restored after the test."""
    monkeypatch.setattr(registry, "_factories", {kind: dict(f) for kind, f in registry._factories.items()})
    return registry


def test_unknown_names_are_value_errors_listing_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"clip 'nope' is not registered \(registered: .*demo, demo-noise-aware"):
        registry.lookup("clip", "nope")
    with pytest.raises(ValueError, match="kind must be one of clip, metric-networks"):
        registry.lookup("weights", "demo")
    assert not registry.registered("model", "nope")


def test_register_then_lookup(isolated) -> None:
    isolated.register("perceptual", "zero", lambda device: device)
    assert isolated.lookup("perceptual", "zero")("cpu") == "cpu"
    assert "zero" in isolated.names("perceptual")
    isolated.register("perceptual", "zero", lambda device: "replaced")
    assert isolated.lookup("perceptual", "zero")("cpu") == "replaced"


def test_the_demo_plugin_is_an_entry_point_and_registers_every_demo_name() -> None:
    points = {point.name: point.value for point in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert points.get("demo") == "syncguide.demo.plugin:register_demo"
    expected = {
        "clip": {"demo", "demo-noise-aware"},
        "dataset": {"demo"},
        "model": {"demo", "demo-ddpm"},
        "perceptual": {"demo-clip"},
        "metric-networks": {"demo"},
    }
    for kind, names in expected.items():
        assert names <= set(registry.names(kind)), kind


def test_a_lookup_loads_the_plugin_from_its_entry_point_in_a_fresh_process() -> None:
    script = """
import sys
from syncguide import registry
assert "syncguide.demo.plugin" not in sys.modules
path = registry.lookup("model", "demo")()
print("syncguide.demo.plugin" in sys.modules, path)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded, path = result.stdout.split()
    assert loaded == "True" and (Path(path) / "model_index.json").is_file()


def test_model_name_finds_the_registered_model_of_a_directory(tmp_path: Path) -> None:
    demo = registry.lookup("model", "demo")()
    assert registry.model_name(demo) == "demo"
    assert registry.model_name(str(demo) + "/") == "demo"
    assert registry.model_name(tmp_path) is None
    assert registry.model_name("") is None
