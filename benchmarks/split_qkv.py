"""An experiment (not part of the package) on the compiled pretraining step's memory traffic (issue 7):
attention that projects q, k and v with three products on row-slices of the same fused ``qkv`` weight (same
parameters, same mathematics) instead of one. With the fused projection the attention kernel's gradients of
q, k and v are interleaved into one (B, N, 3C) gradient by a copy kernel before the projection's backward
products (~0.3 GB of traffic per decoder block); with three products each gradient is already in the layout
its product reads. ``benchmarks/step_matrix.py OUT cudagraphs_splitqkv cudagraphs`` times it against the
plain step in one process; ``tests/test_split_qkv.py`` checks it computes the same in float64.
"""

from __future__ import annotations

import types

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Attention

__all__ = ["split_qkv"]


def _split_qkv_forward(
    self: Attention, x: torch.Tensor, attn_mask=None, is_causal: bool = False
) -> torch.Tensor:
    B, N, _ = x.shape
    w, b = self.qkv.weight, self.qkv.bias
    d = w.shape[0] // 3

    def project(i: int) -> torch.Tensor:  # (B, heads, N, head_dim), a view of a (B, N, d) product
        y = F.linear(x, w[i * d : (i + 1) * d], None if b is None else b[i * d : (i + 1) * d])
        return y.view(B, N, self.num_heads, -1).transpose(1, 2)

    q, k, v = project(0), project(1), project(2)
    q, k = self.q_norm(q), self.k_norm(k)
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=attn_mask,
        dropout_p=self.attn_drop.p if self.training else 0.0,
        is_causal=is_causal,
    )
    out = out.transpose(1, 2).reshape(B, N, d)
    out = getattr(self, "norm", nn.Identity())(out)
    return self.proj_drop(self.proj(out))


def split_qkv(model: nn.Module) -> nn.Module:
    """Switch every timm ``Attention`` of ``model`` to three q / k / v products (same parameters), in place."""
    switched = 0
    for module in model.modules():
        if isinstance(module, Attention):
            if getattr(module, "gate", None) is not None:
                raise ValueError("split_qkv does not handle gated attention")
            module.forward = types.MethodType(_split_qkv_forward, module)
            switched += 1
    if not switched:
        raise ValueError(f"split_qkv: no timm Attention in {type(model).__name__}")
    return model
