"""Decoder attention through FlashAttention-4's kernels (``model.decoder_attention=fa4``).

The decoder attends over every token of a clip (1568 at 16x224x224), which makes its attention most of the
step's attention FLOPs. cuDNN's fused SDPA, PyTorch's pick on Hopper, reaches ~270-325 TFLOP/s there (head dim
64); the CuTe-DSL kernels of the ``flash-attn-4`` package (on Hopper: FA3's warp-specialised algorithm) reach
~440, which takes the ViT-B step over 40% MFU (docs/PERFORMANCE-LOG.md). The encoders keep SDPA: on their
short sequences (157 and 21 tokens) cuDNN is faster.

:class:`FA4Attention` is timm's ``Attention`` (same parameters and state-dict names) whose forward hands the
``(B, N, 3, H, D)`` qkv product to two custom ops as strided views (no permute); the output comes back as
``(B, N, H, D)`` (no transpose) and the backward writes dq, dk and dv into one ``(B, N, 3, H, D)`` gradient (no
interleaving copy). The ops are opaque to ``torch.compile``, run inside CUDA graphs, and need CUDA, bf16 / fp16
(``train.precision=bf16``) and ``pip install 'crossvideomae[fa4]'``; on CUDA in full precision (a forward outside
autocast, such as the run's pictures) the module uses SDPA instead. On a CPU (the tests) the ops compute the same
softmax attention in plain PyTorch, in the input's precision.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention

__all__ = ["FA4Attention", "fa4_bwd", "fa4_fwd", "sdpa_attention"]

INSTALL_HINT = (
    "model.decoder_attention=fa4 needs FlashAttention-4: pip install 'crossvideomae[fa4]' "
    "(or set model.decoder_attention=sdpa)"
)

KERNEL_DTYPES = (torch.bfloat16, torch.float16)  # what the kernels take


@functools.cache
def _kernels():
    try:
        from flash_attn.cute.interface import _flash_attn_bwd, _flash_attn_fwd
    except ImportError as err:
        raise RuntimeError(f"{INSTALL_HINT} ({err})") from None
    return _flash_attn_fwd, _flash_attn_bwd


def _on_kernels(qkv: torch.Tensor) -> bool:
    if not qkv.is_cuda:
        return False
    if qkv.dtype not in KERNEL_DTYPES:
        raise ValueError(
            f"model.decoder_attention=fa4 runs in bf16 / fp16 on CUDA, got {qkv.dtype}: "
            "set train.precision=bf16 or model.decoder_attention=sdpa"
        )
    return True


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # float32 as the kernels write it; float64 in the tests


def _scores(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:  # (B, H, N, N)
    return torch.einsum("bnhd,bmhd->bhnm", q, k).to(_lse_dtype(q.dtype)) * scale


@torch.library.custom_op("crossvideomae::fa4_fwd", mutates_args=())
def fa4_fwd(qkv: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale) v for ``qkv`` (B, N, 3, H, D): out (B, N, H, D) and the rows' log-sum-exp (B, H, N)."""
    q, k, v = qkv.unbind(2)
    if _on_kernels(qkv):
        out, lse = _kernels()[0](q, k, v, softmax_scale=scale, return_lse=True)[:2]
        return out, lse
    s = _scores(q, k, scale)
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - lse[..., None]).to(v.dtype)
    return torch.einsum("bhnm,bmhd->bnhd", p, v).contiguous(), lse


@fa4_fwd.register_fake
def _(qkv, scale):
    B, N, _, H, D = qkv.shape
    return qkv.new_empty(B, N, H, D), qkv.new_empty(B, H, N, dtype=_lse_dtype(qkv.dtype))


@torch.library.custom_op("crossvideomae::fa4_bwd", mutates_args=())
def fa4_bwd(
    qkv: torch.Tensor, out: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor, scale: float
) -> torch.Tensor:
    """The gradient of :func:`fa4_fwd`'s ``out`` with respect to ``qkv``, in ``qkv``'s (B, N, 3, H, D) layout."""
    q, k, v = qkv.unbind(2)
    if _on_kernels(qkv):
        dqkv = torch.empty(qkv.shape, dtype=qkv.dtype, device=qkv.device)
        views = dqkv.unbind(2)
        got = _kernels()[1](q, k, v, out, dout, lse, scale, dq=views[0], dk=views[1], dv=views[2])[:3]
        for view, g in zip(views, got, strict=True):
            if g.data_ptr() != view.data_ptr():  # the kernels wrote elsewhere (a layout they would not take)
                view.copy_(g)
        return dqkv
    # FlashAttention's backward in plain products (autograd is off inside an op): P from the saved lse
    p = torch.exp(_scores(q, k, scale) - lse[..., None]).to(v.dtype)
    dv = torch.einsum("bhnm,bnhd->bmhd", p, dout)
    dp = torch.einsum("bnhd,bmhd->bhnm", dout, v)
    delta = (dout * out).sum(-1).transpose(1, 2)  # (B, H, N): rowsum(dO * O)
    ds = p * (dp - delta[..., None]) * scale
    dq = torch.einsum("bhnm,bmhd->bnhd", ds, k)
    dk = torch.einsum("bhnm,bnhd->bmhd", ds, q)
    return torch.stack((dq, dk, dv), 2)


@fa4_bwd.register_fake
def _(qkv, out, dout, lse, scale):
    return torch.empty_like(qkv, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    qkv, scale = inputs
    out, lse = output
    ctx.save_for_backward(qkv, out, lse)
    ctx.scale = scale


def _backward(ctx, dout, _dlse):  # lse is an auxiliary output: nothing downstream reads it
    qkv, out, lse = ctx.saved_tensors
    return fa4_bwd(qkv, out, dout.contiguous(), lse, ctx.scale), None


fa4_fwd.register_autograd(_backward, setup_context=_setup_context)


def sdpa_attention(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    """What timm's fused path computes from the same ``(B, N, 3, H, D)`` product, as ``(B, N, H, D)``."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)


class FA4Attention(Attention):
    """timm's ``Attention`` (no mask, no dropout, no q/k norm) with :func:`fa4_fwd` in place of SDPA."""

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("FA4Attention: masks are not supported")
        B, N, _ = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)
        if qkv.is_cuda and qkv.dtype not in KERNEL_DTYPES:  # full precision (no autocast,
            out = sdpa_attention(qkv, self.scale)  # e.g. the run's pictures): SDPA, as timm does
        else:
            out, _ = fa4_fwd(qkv, self.scale)
        out = self.norm(out.reshape(B, N, -1)) if hasattr(self, "norm") else out.reshape(B, N, -1)
        return self.proj_drop(self.proj(out))

    @classmethod
    def adopt(cls, attn: Attention) -> FA4Attention:
        """Turn a built timm ``Attention`` into this class in place (same parameters, same state-dict names)."""
        plain = all(isinstance(getattr(attn, n, None), torch.nn.Identity) for n in ("q_norm", "k_norm"))
        if not plain or getattr(attn, "gate", None) is not None or attn.attn_drop.p > 0:
            raise ValueError("FA4Attention: attention without q/k norm, gate or attention dropout only")
        attn.__class__ = cls
        return attn
