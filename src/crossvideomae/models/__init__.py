from .crossvideomae import (
    CrossVideoMAE,
    Outputs,
    build_model,
    patchify,
    pixel_targets,
    slice_mean,
    unpatchify,
)
from .image_mae import ImageMAE
from .masking import hidden_mask, make_mask, num_visible
from .vit import ImageEncoder, VideoEncoder, build_image_encoder, build_video_encoder

__all__ = [
    "CrossVideoMAE",
    "ImageEncoder",
    "ImageMAE",
    "Outputs",
    "VideoEncoder",
    "build_image_encoder",
    "build_model",
    "build_video_encoder",
    "hidden_mask",
    "make_mask",
    "num_visible",
    "patchify",
    "pixel_targets",
    "slice_mean",
    "unpatchify",
]
