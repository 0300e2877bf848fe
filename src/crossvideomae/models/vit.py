"""Video and image ViT encoders that take the indices of their visible tokens.

State-dict names follow MAE / VideoMAE / SpatioTemporalMAE (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``norm``, ``pos_embed_spatial``...), so official checkpoints map onto them with few renames.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig, vit_dims
from ..layers import (
    LayerNorm,
    PatchEmbed,
    TubeletEmbed,
    add_position_table,
    embed_visible,
    position_table,
    sincos_2d,
    transformer_blocks,
)


class _Encoder(nn.Module):
    """Blocks + final norm shared by both encoders."""

    def __init__(
        self, width: int, depth: int, heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float
    ):
        super().__init__()
        self.width, self.depth, self.heads = width, depth, heads
        self.blocks = transformer_blocks(width, depth, heads, mlp_ratio, qkv_bias, drop_path)
        self.norm = LayerNorm(width)
        self.grad_checkpointing = False

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.norm(x)


class VideoEncoder(_Encoder):
    """f_u: tubelet embedding -> position embedding -> visible tokens -> blocks -> LayerNorm.

    pos_embed='sincos': fixed 1-D sin-cos over all tokens (VideoMAE), not stored in checkpoints.
    pos_embed='separable': learned spatial (1, h*w, D) + temporal (1, t, D) tables (SpatioTemporalMAE).
    """

    def __init__(self, cfg: ModelConfig, in_chans: int = 3):
        width, depth, heads = vit_dims(cfg)
        super().__init__(width, depth, heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.drop_path)
        self.patch_embed = TubeletEmbed(
            cfg.img_size, cfg.num_frames, cfg.patch_size, cfg.tubelet_size, in_chans, width
        )
        self.grid = self.patch_embed.grid  # (t, h, w) tokens
        self.num_tokens = self.patch_embed.num_patches
        self.tubelet_size, self.patch_size = cfg.tubelet_size, cfg.patch_size
        self.pos_kind = cfg.pos_embed
        self.grad_checkpointing = cfg.grad_checkpointing
        add_position_table(self, "pos_embed", cfg.pos_embed, self.grid, width)

    def position_table(self) -> torch.Tensor:
        """(1, N, D), time-major."""
        return position_table(self, "pos_embed", self.pos_kind)

    def forward_features(self, video: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """video (B, C, T, H, W) -> visible-token features (B, n_keep, D) (all tokens if ids_keep is None)."""
        pos = self.position_table().to(video.dtype)  # (1, N, D)
        if ids_keep is None:
            return self.run_blocks(self.patch_embed(video) + pos)  # (B, N, D)
        # Only the visible tubelets are embedded: at 90% masking that is a tenth of the projection's work.
        x = self.patch_embed.forward_visible(video, ids_keep) + pos[0, ids_keep]  # (B, n_keep, D)
        return self.run_blocks(x)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) -> mean-pooled clip feature (B, D): the representation that evaluation uses."""
        return tokens.mean(dim=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(video))


class ImageEncoder(_Encoder):
    """f_f: MAE's image encoder (patch embedding, fixed 2-D sin-cos, cls token)."""

    def __init__(self, cfg: ModelConfig, in_chans: int = 3):
        width, depth, heads = vit_dims(cfg)
        super().__init__(width, depth, heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.drop_path)
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, in_chans, width)
        g = cfg.img_size // cfg.patch_size
        self.grid = (1, g, g)
        self.num_tokens = g * g
        self.patch_size = cfg.patch_size
        self.grad_checkpointing = cfg.grad_checkpointing
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.cls_token, std=0.02)
        self.register_buffer("pos_embed", sincos_2d(g, width, cls_token=True), persistent=False)

    def forward_features(self, image: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, C, H, W) -> (B, 1 + n_keep, D): cls token first, then visible patches."""
        pos = self.pos_embed.to(image.dtype)
        if ids_keep is None:
            x = self.patch_embed(image) + pos[:, 1:]  # (B, N, D)
        else:  # only the visible patches are embedded: (B, n_keep, D)
            x = embed_visible(self.patch_embed.proj, image, self.grid, ids_keep) + pos[0, 1:][ids_keep]
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        return self.run_blocks(torch.cat([cls, x], dim=1))

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, 1 + N, D) -> mean-pooled patch feature (B, D) (cls token excluded)."""
        return tokens[:, 1:].mean(dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(image))


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears and patch projections, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_video_encoder(cfg: ModelConfig) -> VideoEncoder:
    enc = VideoEncoder(cfg)
    init_weights(enc)
    return enc


def build_image_encoder(cfg: ModelConfig) -> ImageEncoder:
    enc = ImageEncoder(cfg)
    init_weights(enc)
    return enc
