"""Building blocks: transformer block (timm), tubelet embedding, fixed sin-cos position tables.

The transformer block is timm's ``Block``: pre-norm, fused qkv projection, and attention through
``torch.nn.functional.scaled_dot_product_attention``. Attention *weights* are never materialised in training;
:func:`attention_weights` recomputes them from a block's input for pictures only.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

__all__ = [
    "Block",
    "PatchEmbed",
    "TubeletEmbed",
    "LayerNorm",
    "attention_weights",
    "add_position_table",
    "embed_visible",
    "position_table",
    "separable_table",
    "sincos_1d",
    "sincos_2d",
    "transformer_blocks",
]

# MAE, VideoMAE and SpatioTemporalMAE all use eps=1e-6.
LayerNorm = partial(nn.LayerNorm, eps=1e-6)


def transformer_blocks(
    width: int, depth: int, heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float = 0.0
) -> nn.ModuleList:
    """``depth`` pre-norm blocks with a linearly increasing stochastic-depth rate."""
    rates = torch.linspace(0, drop_path, depth).tolist() if depth > 1 else [drop_path] * depth
    return nn.ModuleList(
        Block(width, heads, mlp_ratio, qkv_bias=qkv_bias, drop_path=r, norm_layer=LayerNorm) for r in rates
    )


class TubeletEmbed(nn.Module):
    """Conv3d over (tubelet x patch x patch) cubes.

    video: (B, C, T, H, W) -> tokens (B, T/t * H/p * W/p, D), ordered time-major (t, h, w) as in VideoMAE.
    """

    def __init__(
        self, img_size: int, num_frames: int, patch_size: int, tubelet_size: int, in_chans: int, dim: int
    ):
        super().__init__()
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = math.prod(self.grid)
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, t, h, w) -> (B, N, D)

    def forward_visible(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, n, D) of the tokens ``ids_keep`` (B, n) only; see :func:`embed_visible`."""
        return embed_visible(self.proj, x, self.grid, ids_keep)


def embed_visible(
    proj: nn.Conv2d | nn.Conv3d, x: torch.Tensor, grid: tuple[int, int, int], ids_keep: torch.Tensor
) -> torch.Tensor:
    """What ``proj`` (a patch or tubelet projection, stride = kernel) gives at the tokens ``ids_keep`` (B, n) of
    ``x`` (B, C, H, W) or (B, C, T, H, W) over a (t, h, w) token grid, time-major: (B, n, D).

    The visible cubes are cut out first and projected as one matrix product, so at 90% masking the projection
    (and the cast of its input under autocast) costs a tenth of running ``proj`` over every token.
    """
    if x.dim() == 4:
        x = x[:, :, None]  # an image is a one-frame video
    B, C = x.shape[:2]
    t, h, w = grid
    kt, kh, kw = (1, *proj.kernel_size) if isinstance(proj, nn.Conv2d) else proj.kernel_size
    cubes = x.reshape(B, C, t, kt, h, kh, w, kw)
    ti, hi, wi = ids_keep // (h * w), ids_keep // w % h, ids_keep % w  # (B, n) each
    rows = torch.arange(B, device=x.device)[:, None]
    cubes = cubes[rows, :, ti, :, hi, :, wi, :].flatten(2)  # (B, n, C*kt*kh*kw): the weight's order
    return nn.functional.linear(cubes, proj.weight.flatten(1), proj.bias)


def add_position_table(module: nn.Module, name: str, kind: str, grid: tuple[int, int, int], dim: int) -> None:
    """Give ``module`` the position table of a (t, h, w) token grid: ``kind='sincos'``, VideoMAE's fixed 1-D
    table over all tokens as the non-persistent buffer ``name`` (never stored); ``separable``, learned
    ``name_spatial`` (1, h*w, dim) and ``name_temporal`` (1, t, dim) tables (SpatioTemporalMAE), truncated-normal
    initialised. Read it back with :func:`position_table`."""
    t, h, w = grid
    if kind == "sincos":
        module.register_buffer(name, sincos_1d(t * h * w, dim), persistent=False)
        return
    spatial, temporal = nn.Parameter(torch.zeros(1, h * w, dim)), nn.Parameter(torch.zeros(1, t, dim))
    setattr(module, f"{name}_spatial", spatial)
    setattr(module, f"{name}_temporal", temporal)
    nn.init.trunc_normal_(spatial, std=0.02)
    nn.init.trunc_normal_(temporal, std=0.02)


def position_table(module: nn.Module, name: str, kind: str) -> torch.Tensor:
    """The (1, t*h*w, dim) table, time-major, that :func:`add_position_table` gave ``module``."""
    if kind == "sincos":
        return getattr(module, name)
    return separable_table(getattr(module, f"{name}_temporal"), getattr(module, f"{name}_spatial"))


def separable_table(temporal: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
    """SpatioTemporalMAE's learned tables: temporal (1, t, D) + spatial (1, h*w, D) -> (1, t*h*w, D), time-major."""
    t, hw = temporal.shape[1], spatial.shape[1]
    return (temporal[:, :, None, :] + spatial[:, None, :, :]).reshape(1, t * hw, -1)


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed table (1, n, dim): sin on even channels, cos on odd, frequency step 2*(j//2)/dim."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()[None]


def _sincos_half(dim: int, pos: torch.Tensor) -> torch.Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.reshape(-1)[:, None] * omega[None]  # (M, dim/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(grid: int, dim: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D table (1, [1+] grid*grid, dim); first half of channels from the w coordinate,
    as MAE's ``np.meshgrid(grid_w, grid_h)`` quirk makes it; a zero row for the cls token."""
    h, w = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )
    table = torch.cat([_sincos_half(dim // 2, w), _sincos_half(dim // 2, h)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=table.dtype), table])
    return table.float()[None]


@torch.no_grad()
def attention_weights(block: Block, x: torch.Tensor) -> torch.Tensor:
    """Head-averaged softmax attention (B, N, N) that ``block`` computes for its input ``x`` (B, N, D).

    Recomputed from the block's own projections, so training keeps SDPA's fused kernels.
    """
    attn = block.attn
    B, N, _ = x.shape
    qkv = attn.qkv(block.norm1(x)).reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # (B, nh, N, hs)
    weights = (q.float() * attn.scale) @ k.float().transpose(-2, -1)
    return weights.softmax(dim=-1).mean(dim=1)
