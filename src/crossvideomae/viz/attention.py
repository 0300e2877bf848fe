"""Self-attention maps of the encoders' last block, for pictures.

Training runs the blocks through SDPA, which never materialises attention weights. A forward pre-hook on
the last block catches that block's input during an ordinary forward pass, and
:func:`crossvideomae.layers.attention_weights` recomputes the head-averaged softmax from the block's own
projections. Both maps below sum to one over the tokens they cover; display scaling happens when drawing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ..layers import attention_weights


@torch.no_grad()
def last_block_attention(encoder: nn.Module, run: Callable[[], object]) -> torch.Tensor:
    """Head-averaged attention (B, N, N) of ``encoder``'s last block during ``run()``."""
    captured: list[torch.Tensor] = []
    hook = encoder.blocks[-1].register_forward_pre_hook(
        lambda blk, args: captured.append(attention_weights(blk, args[0]))
    )
    try:
        run()
    finally:
        hook.remove()
    if len(captured) != 1:
        raise RuntimeError(f"expected one pass through the last encoder block, saw {len(captured)}")
    return captured[0]


@torch.no_grad()
def video_attention_map(model, video: torch.Tensor) -> torch.Tensor:
    """Video encoder on the whole clip (B, C, T, H, W) -> attention map (B, t, h, w).

    The video encoder has no cls token, so a token's score is the attention it receives, averaged over all
    query tokens: the column mean of the (N, N) matrix. Rows sum to one, so the map sums to one.
    """
    enc = model.video_encoder
    attn = last_block_attention(enc, lambda: enc.forward_features(video))  # (B, N, N)
    return attn.mean(dim=1).view(video.shape[0], *enc.grid)


@torch.no_grad()
def image_attention_map(model, images: torch.Tensor) -> torch.Tensor:
    """Image encoder on whole images (B, C, H, W) -> the cls token's attention over patches (B, g, g),
    renormalised to sum to one over the patches (MAE / DINO-style semantic map)."""
    enc = model.image_encoder
    attn = last_block_attention(enc, lambda: enc.forward_features(images))  # (B, 1 + N, 1 + N)
    cls = attn[:, 0, 1:]  # (B, N)
    cls = cls / cls.sum(dim=1, keepdim=True)
    _, g, _ = enc.grid
    return cls.view(images.shape[0], g, g)
