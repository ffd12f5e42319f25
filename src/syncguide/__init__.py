"""syncguide: training-free guided diffusion sampling (SyncDiffusion panoramas, Semantic Diffusion Guidance)."""

from syncguide.family_pipelines import SyncDiffusionXLPipeline, SyncFluxPipeline, SyncSD3Pipeline
from syncguide.layout import Layout, Region
from syncguide.pipeline import PanoramaOutput, SyncDiffusionPipeline
from syncguide.sdg_pipeline import SemanticGuidancePipeline
from syncguide.tiling import Window, anchor_index, make_windows

__all__ = [
    "Layout",
    "PanoramaOutput",
    "Region",
    "SemanticGuidancePipeline",
    "SyncDiffusionPipeline",
    "SyncDiffusionXLPipeline",
    "SyncFluxPipeline",
    "SyncSD3Pipeline",
    "Window",
    "anchor_index",
    "make_windows",
]
__version__ = "0.1.0"
