"""Window ("view") geometry and fusion for joint diffusion on a large latent canvas.

Pure functions, used by every sampler of the project. A window is a square of ``size`` latent pixels at
``(top, left)``; in circular mode its columns wrap past the right edge back to column 0.

References:
    Bar-Tal et al., "MultiDiffusion: Fusing Diffusion Paths for Controlled Image Generation", ICML 2023.
    Lee et al., "SyncDiffusion: Coherent Montage via Synchronized Joint Diffusions", NeurIPS 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Window:
    """A ``size`` x ``size`` latent window whose top-left corner is ``(top, left)``."""

    top: int
    left: int
    size: int


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, plus a last start flush with the edge if needed.

    Every index in ``[0, length)`` is covered. Raises ValueError if ``length < window`` or the stride is not
    in ``1..window``.
    """
    if window < 1 or length < window:
        raise ValueError(f"length ({length}) must be at least the window ({window}), and the window >= 1")
    if not 1 <= stride <= window:
        raise ValueError(f"stride ({stride}) must be in 1..window ({window})")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def circular_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets on a ring of ``length``: every column is covered by ``window // stride`` windows.

    Requires ``stride`` to divide both ``window`` and ``length`` (otherwise coverage cannot be uniform).
    """
    if window < 1 or length < window:
        raise ValueError(f"length ({length}) must be at least the window ({window}), and the window >= 1")
    if not 1 <= stride <= window or window % stride or length % stride:
        raise ValueError(
            f"stride ({stride}) must divide the window ({window}) and the length ({length}) in circular mode"
        )
    return list(range(0, length, stride))


def make_windows(height: int, width: int, window: int, stride: int, circular: bool = False) -> list[Window]:
    """All windows of a ``height`` x ``width`` latent canvas, row-major.

    Args:
        height, width: canvas size in latent pixels, each >= ``window``.
        window: window side in latent pixels (the UNet's ``sample_size`` for Stable Diffusion).
        stride: offset between neighbouring windows in latent pixels, in ``1..window``.
        circular: wrap horizontally (360-degree panorama); rows never wrap.
    """
    rows = window_starts(height, window, stride)
    cols = circular_starts(width, window, stride) if circular else window_starts(width, window, stride)
    return [Window(top, left, window) for top in rows for left in cols]


def anchor_index(windows: list[Window]) -> int:
    """Index of SyncDiffusion's anchor window: the centre one, ``len(windows) // 2``."""
    return len(windows) // 2


def _columns(win: Window, width: int, device: torch.device) -> torch.Tensor:
    return torch.arange(win.left, win.left + win.size, device=device) % width


def crop(canvas: torch.Tensor, win: Window) -> torch.Tensor:
    """The window's content, ``(B, C, size, size)``, from a ``(B, C, H, W)`` canvas (wrapping if needed)."""
    rows = canvas[:, :, win.top : win.top + win.size]
    if win.left + win.size <= canvas.shape[-1]:
        return rows[..., win.left : win.left + win.size]
    return rows[..., _columns(win, canvas.shape[-1], canvas.device)]


def crop_all(canvas: torch.Tensor, windows: list[Window]) -> torch.Tensor:
    """Every window stacked window-major: ``(N * B, C, size, size)`` from a ``(B, C, H, W)`` canvas."""
    return torch.cat([crop(canvas, win) for win in windows])


def coverage(height: int, width: int, windows: list[Window]) -> torch.Tensor:
    """How many windows cover each latent pixel: an integer ``(height, width)`` map."""
    count = torch.zeros(1, 1, height, width)
    ones = torch.ones(1, 1, windows[0].size, windows[0].size)
    for win in windows:
        _add(count, ones, win)
    return count[0, 0].long()


def _add(value: torch.Tensor, tile: torch.Tensor, win: Window) -> None:
    rows = slice(win.top, win.top + win.size)
    if win.left + win.size <= value.shape[-1]:
        value[:, :, rows, win.left : win.left + win.size] += tile
    else:
        value[:, :, rows, _columns(win, value.shape[-1], value.device)] += tile


def fuse(
    views: torch.Tensor, windows: list[Window], canvas_shape: torch.Size, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Average overlapping windows back into one canvas (MultiDiffusion's fusion).

    Args:
        views: ``(N * B, C, size, size)`` window contents, window-major as returned by :func:`crop_all`.
        windows: the N windows (a window may repeat, e.g. once per prompt in region mode).
        canvas_shape: ``(B, C, H, W)``; every pixel must be covered by at least one window.
        weights: optional per-window weights ``(N, 1, size, size)`` >= 0 (region masks); default uniform. Every
            pixel must get a positive total weight.
    Returns:
        ``(B, C, H, W)``: per pixel, the weighted mean of the windows covering it (the least-squares solution of
        MultiDiffusion's Eq. 4).
    """
    value = torch.zeros(canvas_shape, dtype=views.dtype, device=views.device)
    count = torch.zeros(1, 1, *canvas_shape[-2:], dtype=views.dtype, device=views.device)
    ones = torch.ones(1, 1, windows[0].size, windows[0].size, dtype=views.dtype, device=views.device)
    for j, (win, tile) in enumerate(zip(windows, views.chunk(len(windows)), strict=True)):
        weight = ones if weights is None else weights[j : j + 1].to(views.dtype)
        _add(value, tile if weights is None else tile * weight, win)
        _add(count, weight, win)
    return value / count
