"""Which (prompt, window) rows the joint sampler denoises each step, and their fusion weights.

A plain panorama is a layout with only a background prompt: one chunk per window, uniform fusion. A layout adds,
for every region prompt, a chunk on each window its mask touches, fused with the mask as weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from syncguide.models.backbone import Conditioning
from syncguide.tiling import Window, anchor_index, crop


@dataclass(frozen=True)
class RowPlan:
    """The chunks denoised each step, prompt-major; chunk j holds B rows (one per image) of the window stack.

    Chunk j is prompt ``prompts[j]`` on ``windows[j]``; ``weights[j]`` ``(1, s, s)`` is that prompt's 0/1 mask
    on the window (None: every weight is 1, a plain panorama).
    """

    windows: list[Window]
    prompts: list[int]
    weights: torch.Tensor | None

    def chunks_of(self, prompt: int) -> list[int]:
        """Indices of the chunks of ``prompt``, in window order."""
        return [j for j, k in enumerate(self.prompts) if k == prompt]

    def rows(self, chunks: list[int], b: int) -> torch.Tensor:
        """Row indices of ``chunks`` in a stack with ``b`` rows (images) per chunk."""
        return torch.tensor([j * b + r for j in chunks for r in range(b)], dtype=torch.long)

    def anchor_of(self, prompt: int) -> int:
        """Position, among ``prompt``'s chunks, of its anchor: the centre window of those it touches."""
        return anchor_index([self.windows[j] for j in self.chunks_of(prompt)])

    def positions(self, b: int, scale: int) -> torch.Tensor:
        """``(n * b, 2)``: every row's window (top, left) on the canvas in pixels (``scale`` px per latent)."""
        corners = torch.tensor([[w.top * scale, w.left * scale] for w in self.windows], dtype=torch.long)
        return corners.repeat_interleave(b, 0)


def panorama_plan(windows: list[Window]) -> RowPlan:
    """Every window once, for the one (background) prompt, fused uniformly."""
    return RowPlan(list(windows), [0] * len(windows), None)


def region_plan(masks: torch.Tensor, windows: list[Window]) -> RowPlan:
    """Every (prompt, window) pair where the prompt's mask touches the window.

    Args:
        masks: ``(P, h, w)`` 0/1 masks on the latent canvas, background first (:meth:`Layout.masks`).
        windows: the canvas' windows.
    """
    chosen, prompts, weights = [], [], []
    for k in range(masks.shape[0]):
        for win in windows:
            tile = crop(masks[None, k : k + 1], win)[0]
            if tile.any():
                chosen.append(win)
                prompts.append(k)
                weights.append(tile)
    return RowPlan(chosen, prompts, torch.stack(weights))


def plan_conditioning(conds: list[Conditioning], plan: RowPlan) -> Conditioning:
    """The conditioning of every row: ``conds[k]`` (B rows) for each chunk's prompt k, ``n * B`` rows."""
    if len(conds) == 1:
        return conds[0].repeat(len(plan.windows))
    return Conditioning.cat([conds[k] for k in plan.prompts])
