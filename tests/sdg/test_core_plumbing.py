"""One forward-noising function (q_sample) everywhere; the core finds demo resources through the registry only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import syncguide
from syncguide import registry
from syncguide.finetune_clip import diffusion_schedule, training_images
from syncguide.guidance.semantic import ContentGuidance
from syncguide.models.guidance_clip import load_clip
from syncguide.schedulers import q_sample

SRC = Path(syncguide.__file__).parent
ABAR = torch.linspace(0.999, 0.01, 1000)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_q_sample_is_the_float32_formula_bit_for_bit(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = (torch.rand(3, 3, 8, 8, generator=g) * 2 - 1).to(dtype), torch.randn(3, 3, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    abar = ABAR[t].view(-1, 1, 1, 1)
    expected = (abar.sqrt() * x0.float() + (1 - abar).sqrt() * noise).to(dtype)
    got = q_sample(x0, t, ABAR, noise)
    assert got.dtype == dtype and torch.equal(got, expected)
    scalar = q_sample(x0, torch.tensor(500), ABAR, noise)  # one timestep for the whole batch
    assert torch.equal(scalar[1], got[1])


def test_reference_guidance_noises_with_q_sample(tiny_clip_dir: Path) -> None:
    from syncguide.models.clip_towers import load_transformers_clip

    seen = {}
    reference = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1

    class Spy(ContentGuidance):
        def objective(self, x, t):
            from syncguide.guidance.semantic import _noised_reference

            seen["noised"] = _noised_reference(self, x, t)
            return x.flatten(1).sum(-1)

    clip = load_transformers_clip(tiny_clip_dir)
    guidance = Spy(encoder=clip, reference=reference, alphas_cumprod=ABAR, generator=torch.Generator().manual_seed(7))
    t = torch.tensor([100, 800])
    guidance(torch.zeros(2, 3, 16, 16), t)
    noise = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(7))
    assert torch.equal(seen["noised"], q_sample(reference.expand(2, -1, -1, -1), t, ABAR, noise))


def _demo_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("syncguide.demo")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("syncguide.demo"):
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "syncguide":
            found += [f"syncguide.{a.name}" for a in node.names if a.name == "demo"]
    return found


def test_library_core_never_imports_the_demo_world() -> None:
    core = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in ("demo", "cli")]
    assert SRC / "models" / "guidance_clip.py" in core and SRC / "finetune_clip.py" in core
    offenders = {str(p.relative_to(SRC)): _demo_imports(p) for p in core if _demo_imports(p)}
    assert offenders == {}


@pytest.fixture
def plugins_loaded() -> None:
    registry.load_plugins()  # so that a later lookup miss does not re-register over the test's entries


def test_load_clip_resolves_registered_names(monkeypatch, plugins_loaded) -> None:
    sentinel = torch.nn.Identity()
    calls = []
    monkeypatch.setitem(registry._factories["clip"], "test-clip", lambda device: calls.append(device) or sentinel)
    assert load_clip("test-clip", "cpu") is sentinel and calls == ["cpu"]


def test_finetune_demo_data_and_diffusion_come_from_the_registry(monkeypatch, plugins_loaded, tiny_ddpm_dir):
    calls = []

    def dataset(resolution: int, n: int, seed: int) -> torch.Tensor:
        calls.append((resolution, n, seed))
        return torch.zeros(n, 3, resolution, resolution)

    monkeypatch.setitem(registry._factories["dataset"], "demo", dataset)
    monkeypatch.setitem(registry._factories["model"], "demo-ddpm", lambda: tiny_ddpm_dir)
    images = training_images("demo", 16, n_demo=5, seed=3)
    assert images.shape == (5, 3, 16, 16) and calls == [(16, 5, 3)]
    abar, size = diffusion_schedule("demo")
    expected, expected_size = diffusion_schedule(str(tiny_ddpm_dir))
    assert size == expected_size == 16 and torch.equal(abar, expected)
