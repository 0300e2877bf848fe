"""An image MAE (He et al.) around CrossVideoMAE's own image encoder: stage 1 of the paper's pipeline for f_f.

    image ─ random mask (mask.image_ratio) ─ f_f (ImageEncoder, visible patches) ─ decoder_embed ─┐
                                                                                                  decoder ─ pixels

The encoder is the very ``ImageEncoder`` of :class:`CrossVideoMAE` (same module, same state-dict names), so its
export loads into CrossVideoMAE with ``init.image=``. The decoder is CrossVideoMAE's :class:`Decoder` on a
(1, g, g) grid; its input projection plays MAE's ``decoder_embed`` (g_f's place in CrossVideoMAE). The cls token
is encoded but not decoded. Targets are :func:`pixel_targets` of the image as a 1-frame clip with tubelet 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import MaskConfig, ModelConfig
from .crossvideomae import Decoder, pixel_targets
from .masking import hidden_mask, make_mask
from .vit import ImageEncoder, init_weights


@dataclass
class ImageMAEOutputs:
    pred: torch.Tensor  # (B, N, P) decoder predictions for every patch
    target: torch.Tensor  # (B, N, P) normalised pixel targets
    hidden: torch.Tensor  # (B, N) bool, True = hidden patch


class ImageMAE(nn.Module):
    """f_f masked as ``mask.image_type`` / ``mask.image_ratio`` say, a decoder, targets as ``norm_pix`` says."""

    def __init__(self, model: ModelConfig, mask: MaskConfig, norm_pix: str = "patch"):
        super().__init__()
        self.mask_cfg, self.norm_pix, self.patch = mask, norm_pix, model.patch_size
        self.image_encoder = ImageEncoder(model)
        self.grid = self.image_encoder.grid  # (1, g, g)
        self.decoder_embed = nn.Linear(self.image_encoder.width, model.embed_dim)
        self.decoder = Decoder(model, self.grid, 3 * model.patch_size**2)
        init_weights(self)

    def mask_image(self, batch: int, device) -> torch.Tensor:
        """ids_keep (B, n) as CrossVideoMAE's image branch draws them."""
        k = self.mask_cfg
        return make_mask(k.image_type, batch, self.grid, k.image_ratio, device)

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> (B, N, 3 * patch**2) normalised pixels, pixels (ph, pw, c) within a patch."""
        return pixel_targets(images.unsqueeze(2), 1, self.patch, self.norm_pix)

    def forward(self, images: torch.Tensor, ids_keep: torch.Tensor | None = None) -> ImageMAEOutputs:
        """images (B, C, H, W); ids_keep (B, n) the visible patches (None: drawn here)."""
        if ids_keep is None:
            ids_keep = self.mask_image(images.shape[0], images.device)
        tokens = self.image_encoder.forward_features(images, ids_keep)[:, 1:]  # (B, n, D), cls dropped
        pred = self.decoder(self.decoder_embed(tokens), ids_keep)
        return ImageMAEOutputs(
            pred, self.targets(images), hidden_mask(ids_keep, self.image_encoder.num_tokens)
        )
