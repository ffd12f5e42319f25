"""Evaluation metrics of SyncDiffusion and SDG: one file per metric, each a function and a class.

Every image input is float ``(B, 3, H, W)`` in [0, 1]; panoramas are ``(B, 3, crop, W)`` with W a multiple of
the crop size. See ``/shared/specs/evaluation.md`` for the protocol.
"""

from syncguide.metrics.base import Metric
from syncguide.metrics.clip_score import MeanCLIPScore, clip_score
from syncguide.metrics.crops import random_crops, window_crops
from syncguide.metrics.fid import FID, fid
from syncguide.metrics.frechet import frechet_distance
from syncguide.metrics.giqa import MeanGIQA, knn_giqa
from syncguide.metrics.kid import KID, kid
from syncguide.metrics.networks import CropAgreement, MetricNetworks, load_networks, network_names, real_networks
from syncguide.metrics.pairwise import (
    IntraLPIPS,
    IntraStyleL,
    LPIPSDiversity,
    gram,
    intra_lpips,
    intra_style_loss,
    lpips_diversity,
)
from syncguide.metrics.reference_networks import (
    InceptionFeatures,
    VGG19Style,
    load_inception,
    load_lpips,
    load_vgg19_style,
)
from syncguide.metrics.retrieval import TopKRetrieval, topk_retrieval

__all__ = [
    "FID",
    "KID",
    "CropAgreement",
    "InceptionFeatures",
    "IntraLPIPS",
    "IntraStyleL",
    "LPIPSDiversity",
    "MeanCLIPScore",
    "MeanGIQA",
    "Metric",
    "MetricNetworks",
    "TopKRetrieval",
    "VGG19Style",
    "clip_score",
    "fid",
    "frechet_distance",
    "gram",
    "intra_lpips",
    "intra_style_loss",
    "kid",
    "knn_giqa",
    "load_inception",
    "load_lpips",
    "load_networks",
    "load_vgg19_style",
    "lpips_diversity",
    "network_names",
    "random_crops",
    "real_networks",
    "topk_retrieval",
    "window_crops",
]
