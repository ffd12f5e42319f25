"""Self-supervised fine-tuning of a noise-aware CLIP image encoder (SDG, Liu et al. WACV 2023, section 3.3).

For clean images x_0 of the diffusion model's domain: t uniform over the training timesteps, x_t = q(x_t | x_0)
with the diffusion model's own noise schedule. The student E'(x_t, t) (timestep-conditioned copy of the image
tower) is pulled towards the frozen original encoder's embedding of x_0 by a symmetric InfoNCE loss, logits =
100 * s t^T with the other images of the batch as negatives. No text is needed and the text tower is untouched,
so text guidance still works with the fine-tuned encoder.

Deterministic given ``seed`` and resumable bit for bit from ``<out>/checkpoint`` (see :mod:`syncguide.training`).
Every input is checked before anything loads or is written (:func:`check_settings`): the kinds of the CLIP and the
diffusion model from their files, every training image decoded, the checkpoint's settings.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from syncguide import registry
from syncguide.errors import SettingError
from syncguide.hub import check_model
from syncguide.images import IMAGE_SUFFIXES, SIGNED, image_files, load_images
from syncguide.modelkind import DESCRIPTIONS, UNCONDITIONAL
from syncguide.models.clip_towers import CLIPTower
from syncguide.models.guidance_clip import check_clip, load_base, save_noise_aware
from syncguide.models.noise_aware import NoiseAwareCLIP
from syncguide.schedulers import q_sample
from syncguide.training import (
    Checkpoint,
    DivergedError,
    batch_indices,
    check_resume,
    final_loss,
    resume_step,
    step_generator,
    timer,
    train_loop,
)

MAX_BATCH_SIZE = 1024
"""Largest training batch (the paper's is 32 per GPU): one tensor of images on the device."""
DIFFUSION_NEEDS = (
    f"expected {DESCRIPTIONS[UNCONDITIONAL]}: the noise-aware CLIP reads the noisy pixels x_t of a pixel-space model"
    " (a Stable Diffusion pipeline's guidance reads decoded clean images, with a plain CLIP)"
)


@dataclass(frozen=True)
class FinetuneSettings:
    """What a checkpoint must agree with to be resumed."""

    clip: str
    data: str
    diffusion: str
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 0


def symmetric_infonce(student: torch.Tensor, teacher: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """Symmetric InfoNCE of embeddings ``(B, D)``: row i of each is the positive pair, other rows the negatives."""
    s, t = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    logits = scale * s @ t.T
    labels = torch.arange(s.shape[0], device=s.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def check_settings(settings: FinetuneSettings) -> None:
    """SettingError (naming the field) for settings that cannot train, from files and numbers only (no weights
    load): ``batch_size`` in [2, :data:`MAX_BATCH_SIZE`], ``lr`` finite and > 0, ``clip`` a plain CLIP
    (:func:`~syncguide.models.guidance_clip.check_clip`), ``diffusion`` ``demo`` or an unconditional pixel-space
    pipeline (:mod:`syncguide.modelkind`), ``data`` ``demo`` or a directory."""
    if isinstance(settings.batch_size, bool) or not 2 <= settings.batch_size <= MAX_BATCH_SIZE:
        raise SettingError("batch_size", f"must be in [2, {MAX_BATCH_SIZE}]; got {settings.batch_size}")
    if not (math.isfinite(settings.lr) and settings.lr > 0):
        raise SettingError("lr", f"must be finite and > 0; got {settings.lr}")
    if settings.data != "demo" and not Path(settings.data).is_dir():
        raise SettingError("data", f"{settings.data} is not a directory (or demo)")
    check_clip(settings.clip, "clip", noise_aware=False)
    if settings.diffusion != "demo":
        check_model(settings.diffusion, "diffusion", (UNCONDITIONAL,), DIFFUSION_NEEDS)


def diffusion_schedule(model: str) -> tuple[torch.Tensor, int]:
    """``(alphas_cumprod (T,), image resolution)`` of a diffusers diffusion model (``demo``: the registered
    ``demo-ddpm`` model).

    The resolution is the UNet's sample size, times the VAE's downsampling for latent models.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

    source = str(registry.lookup("model", "demo-ddpm")()) if model == "demo" else model
    scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler")
    unet_config = UNet2DModel.load_config(source, subfolder="unet")  # any model's config: only its keys are read
    size = unet_config["sample_size"]
    size = size if isinstance(size, int) else size[0]
    if "cross_attention_dim" in unet_config:  # latent model: pixels = latents * VAE factor
        size *= 2 ** (len(AutoencoderKL.load_config(source, subfolder="vae")["block_out_channels"]) - 1)
    return scheduler.alphas_cumprod.clone(), int(size)


def training_images(data: str, resolution: int, n_demo: int = 4096, seed: int = 0) -> torch.Tensor:
    """Training images ``(N, 3, R, R)`` in [-1, 1]: ``demo`` (the registered ``demo`` dataset, ``n_demo`` images
    drawn from ``seed``) or every image file in a directory (:func:`syncguide.images.image_files`).

    Files are resized (shorter side to R) and centre-cropped. SettingError (``data``) if the directory holds no
    image, or naming the first file that cannot be read as one (missing, not an image, truncated, too many pixels).
    """
    if data == "demo":
        return registry.lookup("dataset", "demo")(resolution, n_demo, seed)
    files = image_files(data)
    if not files:
        raise SettingError("data", f"has no image files ({', '.join(IMAGE_SUFFIXES)}) in {data}")
    return torch.cat([_training_image(file, resolution) for file in files])


def _training_image(file: Path, resolution: int) -> torch.Tensor:
    """One training image ``(1, 3, R, R)``; SettingError ``data`` naming ``file`` if it cannot be decoded."""
    try:
        return load_images([file], value_range=SIGNED, resolution=resolution)
    except ValueError as error:  # more pixels than allowed: the message names the file
        raise SettingError("data", str(error)) from None
    except (OSError, SyntaxError) as error:  # missing, not an image, truncated (PIL's errors)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SettingError("data", f"cannot read {file} as an image: {reason}") from None


def finetune(
    out: str | Path,
    settings: FinetuneSettings,
    steps: int,
    checkpoint_every: int = 100,
    resume: bool = True,
    device: torch.device | str = "cpu",
) -> Path:
    """Fine-tune ``settings.clip`` to read noisy images of ``settings.diffusion``; export to ``out`` (returned).

    Checkpoints every ``checkpoint_every`` steps into ``out/checkpoint``; a later call with the same settings and
    more ``steps`` continues from there. The result loads with
    :func:`syncguide.models.guidance_clip.load_clip` ``(out)``.

    Raises (before anything is written): SettingError for bad settings (:func:`check_settings`) or an unreadable
    training image; :class:`~syncguide.training.CheckpointMismatch` for a checkpoint made with other settings or
    past ``steps``. SettingError ``lr`` if the loss becomes NaN or infinite (the checkpoints saved until then stay).
    """
    out = Path(out)
    check_settings(settings)
    checkpoint = Checkpoint(out / "checkpoint")
    check_resume(checkpoint, asdict(settings), resume, steps)
    alphas_cumprod, resolution = diffusion_schedule(settings.diffusion)
    images = training_images(settings.data, resolution, seed=settings.seed)
    original = load_base(settings.clip, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # the timestep MLP's initialisation: the same in every (resumed) run
        student = NoiseAwareCLIP(copy.deepcopy(original)).to(device)
    optimizer = torch.optim.AdamW(student.trainable_parameters(), lr=settings.lr, weight_decay=0.0)
    for param in student.trainable_parameters():
        param.requires_grad_(True)
    modules = {"encoder": student}
    start = resume_step(checkpoint, modules, optimizer, asdict(settings), resume)
    step = finetune_step(student, original, optimizer, images, alphas_cumprod, settings, device)
    student.train()
    with timer() as clock:
        try:
            losses = train_loop(
                step,
                start,
                steps,
                lambda k: checkpoint.save(k, modules, optimizer, asdict(settings)),
                every=checkpoint_every,
                desc="finetune-clip",
            )
        except DivergedError as error:
            rule = f"training diverged: {error}; try a smaller learning rate (got {settings.lr})"
            raise SettingError("lr", rule) from None
    info = {"steps": steps, "resumed_from": start, "seconds": clock["seconds"], "final_loss": final_loss(losses)}
    save_noise_aware(student.eval(), out, settings.clip, diffusion=settings.diffusion, data=settings.data, **info)
    return out


def finetune_step(
    student: NoiseAwareCLIP,
    original: CLIPTower,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    settings: FinetuneSettings,
    device: torch.device | str,
) -> Callable[[int], float]:
    """``step(k)``: training step k (batch, flips, timesteps and noise drawn from ``(seed, k)``); returns the loss.

    ``student`` is a :class:`NoiseAwareCLIP` around a copy of ``original`` (the frozen teacher); ``images``
    ``(N, 3, R, R)`` in [-1, 1]; ``alphas_cumprod`` ``(T,)`` the diffusion model's schedule.
    """

    def step(k: int) -> float:
        g = step_generator(settings.seed, k)
        x0 = images[batch_indices(len(images), settings.batch_size, g)]
        flip = torch.rand(x0.shape[0], generator=g) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        xt = q_sample(x0, t, alphas_cumprod, noise).to(device)
        with torch.no_grad():
            teacher = original.embed(x0.to(device))
        loss = symmetric_infonce(student.embed(xt, t.to(device)), teacher)
        if not torch.isfinite(loss):
            raise DivergedError(k, loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step
