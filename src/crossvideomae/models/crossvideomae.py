"""The CrossVideoMAE model: a video MAE and an image MAE encoder tied by shared embedding spaces.

    view 1, view 2 ─ f_u (shared video encoder, visible tokens) ─ g_u ─┬─ z_u (video level), z_f (frame level)
                                                                     └─ decoder ─ e_u ─ pixels of every tubelet
    sampled frame(s) ─ f_f (image encoder, visible patches) ─ g_f ─── h_f (frame), h_u (mean over frames)

With ``model.contrastive_head=mlp`` the pooled z_u, z_f (video head) and h_f (image head) pass through a
SimCLR-style MLP before the contrastive terms; g_u still feeds the decoder unchanged.

Both views travel through the encoder and decoder as one batch of 2B clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.layers import Mlp

from ..config import Config, MaskConfig, ModelConfig
from ..fa4 import FA4Attention
from ..layers import LayerNorm, add_position_table, position_table, transformer_blocks
from .masking import hidden_mask, make_mask
from .vit import ImageEncoder, VideoEncoder, init_weights


def patchify(video: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """video (B, C, T, H, W) -> (B, N, tubelet*patch*patch*C), tokens time-major, pixels (pt, ph, pw, c)
    within a token (VideoMAE's layout)."""
    B, C, T, H, W = video.shape
    t, h, w = T // tubelet, H // patch, W // patch
    x = video.reshape(B, C, t, tubelet, h, patch, w, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, t, h, w, pt, ph, pw, C)
    return x.reshape(B, t * h * w, tubelet * patch * patch * C)


def unpatchify(x: torch.Tensor, grid: tuple[int, int, int], tubelet: int, patch: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, tubelet*patch*patch*C) -> (B, C, T, H, W)."""
    B = x.shape[0]
    t, h, w = grid
    x = x.reshape(B, t, h, w, tubelet, patch, patch, -1)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, t, pt, h, ph, w, pw)
    return x.reshape(B, -1, t * tubelet, h * patch, w * patch)


def pixel_targets(videos: torch.Tensor, tubelet: int, patch: int, norm_pix: str) -> torch.Tensor:
    """Reconstruction targets (B, N, P) of videos (B, C, T, H, W) (an image is a 1-frame clip with tubelet 1),
    normalised as ``norm_pix`` (``loss.norm_pix``) says: patch | channel | none."""
    x = patchify(videos.float(), tubelet, patch)
    if norm_pix == "patch":  # MAE: each patch by its own mean and variance
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
        return (x - mean) / (var + 1e-6).sqrt()
    if norm_pix == "channel":  # VideoMAE: each colour channel of a patch separately
        B, N, _ = x.shape
        x = x.reshape(B, N, -1, 3)
        x = (x - x.mean(2, keepdim=True)) / (x.var(2, keepdim=True, unbiased=True).sqrt() + 1e-6)
        return x.reshape(B, N, -1)
    return x


def slice_mean(
    emb: torch.Tensor, ids_keep: torch.Tensor, slot: torch.Tensor, tokens_per_slice: int, num_slices: int
) -> torch.Tensor:
    """Frame-level embedding: mean of visible-token embeddings of a time slice.

    emb (B, n, E) visible-token embeddings; ids_keep (B, n); slot (B, F) the time slice of each sampled frame.
    Returns (B, F, E). Where a slice has no visible token, the nearest slice that has one is used (the
    earlier one on a tie), so the result is always defined.
    """
    token_slice = torch.div(ids_keep, tokens_per_slice, rounding_mode="floor")  # (B, n)
    present = torch.zeros(emb.shape[0], num_slices, device=emb.device, dtype=torch.bool)
    present.scatter_(1, token_slice, True)  # (B, t)
    slices = torch.arange(num_slices, device=emb.device)
    distance = (slices[None, None, :] - slot[:, :, None]).abs().float()  # (B, F, t)
    distance = distance + (~present[:, None, :]).float() * (2 * num_slices)
    chosen = distance.argmin(dim=2)  # (B, F): first minimum = earlier slice on a tie
    weights = (token_slice[:, None, :] == chosen[:, :, None]).to(emb.dtype)  # (B, F, n)
    return (weights @ emb) / weights.sum(dim=2, keepdim=True)


@dataclass
class Outputs:
    """Everything the losses need, both views stacked along the batch: index [:B] is view 1, [B:] view 2."""

    pred: torch.Tensor  # (2B, N, P) decoder predictions for every token
    target: torch.Tensor  # (2B, N, P) normalised pixel targets
    hidden: torch.Tensor  # (2B, N) bool, True = hidden token
    z_u: torch.Tensor  # (2B, E) video-level embeddings
    z_f: torch.Tensor  # (2B, F, E) frame-level embeddings
    h_f: torch.Tensor | None = (
        None  # (B, F, E) image embeddings of the sampled frames (None: video branch only)
    )


class Decoder(nn.Module):
    """Visible g_u tokens + a learned mask token at every hidden position + position table -> blocks -> e_u."""

    def __init__(self, cfg: ModelConfig, grid: tuple[int, int, int], pixels_per_token: int):
        super().__init__()
        dim = cfg.embed_dim
        t, h, w = grid
        self.num_tokens = t * h * w
        self.pos_kind = cfg.pos_embed
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        add_position_table(self, "decoder_pos_embed", cfg.pos_embed, grid, dim)
        self.blocks = transformer_blocks(
            dim, cfg.decoder_depth, cfg.decoder_heads, cfg.mlp_ratio, cfg.qkv_bias
        )
        if cfg.decoder_attention == "fa4":  # same parameters, FlashAttention-4's kernels (crossvideomae.fa4)
            for blk in self.blocks:
                FA4Attention.adopt(blk.attn)
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, pixels_per_token)  # e_u
        nn.init.normal_(self.mask_token, std=0.02)

    def position_table(self) -> torch.Tensor:
        return position_table(self, "decoder_pos_embed", self.pos_kind)

    def forward(self, emb: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """emb (B, n, E) visible-token embeddings -> predictions (B, N, P) in token order."""
        B, _, E = emb.shape
        x = self.mask_token.to(emb.dtype).expand(B, self.num_tokens, E)
        x = x.scatter(1, ids_keep[..., None].expand(-1, -1, E), emb)  # (B, N, E)
        x = x + self.position_table().to(x.dtype)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


class CrossVideoMAE(nn.Module):
    """The model of ``model``'s sizes, masking both branches as ``mask`` says, with reconstruction targets
    normalised as ``norm_pix`` says (``loss.norm_pix``: patch | channel | none)."""

    def __init__(self, model: ModelConfig, mask: MaskConfig, norm_pix: str = "patch"):
        super().__init__()
        m = self.model_cfg = model
        self.mask_cfg, self.norm_pix = mask, norm_pix
        self.video_encoder = VideoEncoder(m)
        self.image_encoder = ImageEncoder(m)
        self.video_proj = nn.Linear(self.video_encoder.width, m.embed_dim, bias=False)  # g_u
        self.image_proj = nn.Linear(self.image_encoder.width, m.embed_dim)  # g_f
        self.grid = self.video_encoder.grid
        self.tubelet, self.patch = m.tubelet_size, m.patch_size
        self.decoder = Decoder(m, self.grid, 3 * m.tubelet_size * m.patch_size**2)
        identity = m.contrastive_head == "none"
        self.video_head = nn.Identity() if identity else Mlp(m.embed_dim, 4 * m.embed_dim, m.embed_dim)
        self.image_head = nn.Identity() if identity else Mlp(m.embed_dim, 4 * m.embed_dim, m.embed_dim)
        init_weights(self)

    # ------------------------------------------------------------------------------------------- pieces
    def mask_video(self, batch: int, device) -> torch.Tensor:
        k = self.mask_cfg
        return make_mask(k.video_type, batch, self.grid, k.video_ratio, device)

    def mask_image(self, batch: int, device) -> torch.Tensor:
        k = self.mask_cfg
        return make_mask(k.image_type, batch, self.image_encoder.grid, k.image_ratio, device)

    def targets(self, videos: torch.Tensor) -> torch.Tensor:
        """Reconstruction targets (B, N, P) with the configured per-patch normalisation."""
        return pixel_targets(videos, self.tubelet, self.patch, self.norm_pix)

    def encode_video(self, videos: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """videos (B, C, T, H, W) -> g_u embeddings of the visible tokens (B, n, E)."""
        return self.video_proj(self.video_encoder.forward_features(videos, ids_keep))

    def encode_images(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> h_f (B, E): g_f embeddings averaged over visible patches, cls excluded."""
        return self.image_proj(self.image_encoder.forward_features(images, ids_keep)[:, 1:]).mean(dim=1)

    # ------------------------------------------------------------------------------------------ forward
    def forward_video(
        self,
        video1: torch.Tensor,
        video2: torch.Tensor,
        frame_index1: torch.Tensor,
        frame_index2: torch.Tensor,
    ) -> Outputs:
        """The video branch on both views (as one batch of 2B clips): :class:`Outputs` without ``h_f``."""
        return self.forward_clips(torch.cat([video1, video2]), torch.cat([frame_index1, frame_index2]))

    def forward_clips(self, videos: torch.Tensor, frame_index: torch.Tensor) -> Outputs:
        """Clips (B', C, T, H, W) masked, encoded (f_u, g_u) and decoded; frame_index (B', F) the positions of the
        sampled frames in each clip. :class:`Outputs` of these clips without ``h_f``."""
        ids_v = self.mask_video(videos.shape[0], videos.device)  # (B', n)
        emb = self.encode_video(videos, ids_v)  # (B', n, E)
        pred = self.decoder(emb, ids_v)  # (B', N, P)
        t, h, w = self.grid
        slot = frame_index // self.tubelet  # (B', F)
        return Outputs(
            pred=pred,
            target=self.targets(videos),
            hidden=hidden_mask(ids_v, t * h * w),
            z_u=self.video_head(emb.mean(dim=1)),
            z_f=self.video_head(slice_mean(emb, ids_v, slot, h * w, t)),  # (B', F, E)
        )

    def forward_images(self, images: torch.Tensor) -> torch.Tensor:
        """The image branch: sampled frames (B, F, C, H, W) masked and encoded (f_f, g_f) -> h_f (B, F, E)."""
        B, F = images.shape[:2]
        ids_i = self.mask_image(B * F, images.device)
        return self.image_head(self.encode_images(images.flatten(0, 1), ids_i)).view(B, F, -1)

    def forward(
        self,
        video1: torch.Tensor,
        video2: torch.Tensor,
        images: torch.Tensor,
        frame_index1: torch.Tensor,
        frame_index2: torch.Tensor,
    ) -> Outputs:
        """video1, video2 (B, C, T, H, W); images (B, F, C, H, W); frame_index1/2 (B, F) frame positions of the
        sampled frames inside each view. The video branch runs (and draws its masks) before the image branch."""
        out = self.forward_video(video1, video2, frame_index1, frame_index2)
        out.h_f = self.forward_images(images)
        return out


def build_model(cfg: Config) -> CrossVideoMAE:
    """The model of ``cfg.model``, ``cfg.mask`` and ``cfg.loss.norm_pix``."""
    return CrossVideoMAE(cfg.model, cfg.mask, cfg.loss.norm_pix)
