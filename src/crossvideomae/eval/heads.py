"""Classification heads on a frozen or trained encoder.

- :class:`LinearProbe`: BatchNorm without affine + linear, on mean-pooled features (MAE's linear probe; the
  BatchNorm whitens the features, so one SGD lr suits every encoder).
- :class:`AttentiveProbe`: a learned query cross-attends over all tokens of a frozen encoder (timm's
  ``AttentionPoolLatent``: attention pooling + MLP), then LayerNorm + linear; the frozen-encoder protocol of
  V-JEPA and VideoMAE v2, which keeps what mean pooling throws away (where in the clip, and when).
- :class:`Classifier`: encoder -> mean-pooled feature -> dropout -> linear, for fine-tuning. It exposes timm's
  ``group_matcher`` so ``timm.optim.param_groups_layer_decay`` assigns BEiT-style layers: stem (patch and
  position embeddings, cls token) = 0, block i = i + 1, final norm and head = depth + 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import AttentionPoolLatent


class LinearProbe(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, D) -> logits (B, num_classes)."""
        return self.head(self.norm(features))


class AttentiveProbe(nn.Module):
    def __init__(self, dim: int, num_classes: int, num_heads: int = 0):
        super().__init__()
        heads = num_heads or max(1, dim // 64)
        self.pool = AttentionPoolLatent(dim, num_heads=heads, norm_layer=nn.LayerNorm)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D) -> logits (B, num_classes)."""
        return self.head(self.norm(self.pool(tokens)))


class Classifier(nn.Module):
    """A video or image encoder whose ``forward`` returns a mean-pooled (B, D) feature, plus a linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.width, num_classes)
        # MAE fine-tuning: a near-zero head so the first steps do not wreck the pretrained features.
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) or (B, C, H, W) -> logits (B, num_classes)."""
        return self.head(self.dropout(self.encoder(x)))

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^encoder\.(?:patch_embed|pos_embed|cls_token)",
            "blocks": r"^encoder\.blocks\.(\d+)",
        }
