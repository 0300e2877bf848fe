"""Classification heads on a frozen or trained encoder.

- :class:`LinearProbe`: BatchNorm without affine + linear, on mean-pooled features (MAE's linear probe; the
  BatchNorm whitens the features, so one SGD lr suits every encoder).
- :class:`AttentiveProbe`: a learned query cross-attends over all tokens of a frozen encoder (timm's
  ``AttentionPoolLatent``: attention pooling + MLP), then LayerNorm + linear; the frozen-encoder protocol of
  V-JEPA and VideoMAE v2, which keeps what mean pooling throws away (where in the clip, and when).
- :class:`Classifier`: encoder -> mean-pooled feature -> dropout -> linear, for fine-tuning; with
  ``pool="attentive"`` (``eval.ft_pool=attentive``) the attentive probe's pooling over all tokens instead of
  the mean, which :meth:`Classifier.load_head` can take from a trained attentive probe (LP-FT). It exposes
  timm's ``group_matcher`` so ``timm.optim.param_groups_layer_decay`` assigns BEiT-style layers: stem (patch
  and position embeddings, cls token) = 0, block i = i + 1, final norm, pooling and head = depth + 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file
from timm.layers import AttentionPoolLatent

from ..config import ConfigError
from ..engine.checkpoint import CheckpointError


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


def attentive_pool(dim: int, num_heads: int = 0) -> nn.Sequential:
    """tokens (B, N, D) -> (B, D): a learned query cross-attends over the tokens (timm's
    ``AttentionPoolLatent``: attention pooling + MLP), then LayerNorm."""
    heads = num_heads or max(1, dim // 64)
    return nn.Sequential(
        AttentionPoolLatent(dim, num_heads=heads, norm_layer=nn.LayerNorm), nn.LayerNorm(dim)
    )


class AttentiveProbe(nn.Module):
    def __init__(self, dim: int, num_classes: int, num_heads: int = 0):
        super().__init__()
        self.pool = attentive_pool(dim, num_heads)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D) -> logits (B, num_classes)."""
        return self.head(self.pool(tokens))


class Classifier(nn.Module):
    """A video or image encoder whose ``forward`` returns a mean-pooled (B, D) feature, plus a linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.0, pool: str = "mean"):
        super().__init__()
        self.encoder = encoder
        # attentive: the attentive probe's pooling over every token, trained with the encoder
        self.pool = attentive_pool(encoder.width) if pool == "attentive" else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.width, num_classes)
        # MAE fine-tuning: a near-zero head so the first steps do not wreck the pretrained features; behind the
        # freshly initialised attentive pooling, the attentive probe's init (its pooling must learn first)
        nn.init.trunc_normal_(self.head.weight, std=2e-5 if self.pool is None else 0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) or (B, C, H, W) -> logits (B, num_classes)."""
        feature = self.encoder(x) if self.pool is None else self.pool(self.encoder.forward_features(x))
        return self.head(self.dropout(feature))

    def load_head(self, path: str | Path) -> dict[str, Any]:
        """The pooling and head from an attentive probe's weights (``readout``'s
        ``attentive_probe-*.safetensors``: the same modules); the encoder is untouched. Returns a load report."""
        if self.pool is None:
            raise ConfigError(
                "eval.ft_head_init: the head reads attentive pooling; set eval.ft_pool=attentive"
            )
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"eval.ft_head_init: {path} not found")
        probe = load_file(path)
        own = {k: v for k, v in self.state_dict().items() if k.startswith(("pool.", "head."))}
        if set(probe) != set(own):
            missing, extra = sorted(set(own) - set(probe)), sorted(set(probe) - set(own))
            raise CheckpointError(
                f"{path}: not an attentive probe of this classifier (missing {missing[:3]}, unexpected {extra[:3]})"
            )
        wrong = [
            f"{k} {tuple(probe[k].shape)} vs {tuple(v.shape)}"
            for k, v in own.items()
            if v.shape != probe[k].shape
        ]
        if wrong:
            raise CheckpointError(
                f"{path}: shapes differ from this classifier's (width, classes): {wrong[0]}"
            )
        self.load_state_dict(probe, strict=False)
        return {"file": str(path), "tensors": len(probe), "loaded": "pool, head"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^encoder\.(?:patch_embed|pos_embed|cls_token)",
            "blocks": r"^encoder\.blocks\.(\d+)",
        }
