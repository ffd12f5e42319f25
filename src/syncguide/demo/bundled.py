"""The demo world's models shipped inside the package (trained by ``syncguide demo train NAME``)."""

from __future__ import annotations

from pathlib import Path

BUNDLED = Path(__file__).parent / "models"
MODELS = {
    "sd": "the CLI's default model (diffusers StableDiffusionPipeline format)",
    "ddpm": "an unconditional model like those SDG guides (diffusers DDPMPipeline format)",
    "clip": "SDG guidance and the demo sync loss (transformers CLIPModel format)",
    "clip-noise-aware": "the demo CLIP fine-tuned to read the demo DDPM's noisy images (syncguide finetune-clip)",
    "judge": "judging every demo evaluation; nothing guides with it",
    "tiny-decoder": "fast sync mode's gradient-path decoder for the demo VAE (diffusers AutoencoderTiny format)",
    "controlnet": "edge maps steering the demo SD in ControlNet panoramas (diffusers ControlNetModel format)",
}

COMMANDS = {"clip-noise-aware": "syncguide finetune-clip --clip demo --data demo --diffusion demo --steps 3000"}


def bundled(name: str) -> Path:
    """Directory of bundled model ``name``; FileNotFoundError (saying how to make it) if it is not installed."""
    if name not in MODELS:
        raise ValueError(f"bundled model must be one of {', '.join(MODELS)}; got {name!r}")
    path = BUNDLED / name
    if not any(path.glob("*.json")):
        raise FileNotFoundError(
            f"the bundled demo model {name!r} is not in this install ({path}); "
            f"make it with `{COMMANDS.get(name, f'syncguide demo train {name}')}` and copy runs/{name}/model there"
        )
    return path


def is_bundled(path: str | Path) -> bool:
    """Whether ``path`` is one of the bundled model directories."""
    try:
        return Path(path).resolve().parent == BUNDLED.resolve()
    except OSError:
        return False
