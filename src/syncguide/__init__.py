"""syncguide: training-free guided diffusion sampling (SyncDiffusion panoramas, Semantic Diffusion Guidance)."""

from syncguide.pipeline import PanoramaOutput, SyncDiffusionPipeline
from syncguide.tiling import Window, anchor_index, make_windows

__all__ = ["PanoramaOutput", "SyncDiffusionPipeline", "Window", "anchor_index", "make_windows"]
__version__ = "0.1.0"
