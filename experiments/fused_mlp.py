"""An experiment (not part of the package): the transformer MLP (fc1 -> exact GELU -> fc2) with GELU fused
into Triton matrix products, to see whether it beats cuBLAS + Inductor's separate GELU kernels.
It does not, on the H200 (docs/PERFORMANCE-LOG.md, "Run 6"); it is kept so that the measurement can be re-run:
``python experiments/mlp_bench.py OUT`` and ``python experiments/step_variants.py OUT cudagraphs_fused cudagraphs``.

Unfused, the GELU is a memory-bound pass of its own: on the decoder's (64 x 1568, 1536) hidden activations it
reads and writes ~0.6 GB forward and ~0.9 GB backward per block. Here

- forward: one Triton GEMM computes ``h = x @ W1^T + b1`` and, in its epilogue, ``g = gelu(h)``; both are
  stored (``h`` for GELU's derivative, ``g`` for fc2's weight gradient), then fc2 runs on cuBLAS;
- backward: one Triton GEMM computes ``dg = dy @ W2`` and, in its epilogue, ``dh = dg * gelu'(h)`` plus
  per-tile column sums of ``dh`` (fc1's bias gradient, summed after: deterministic, no atomics); the weight
  and input gradients run on cuBLAS.

:class:`FusedMlp` is timm's ``Mlp`` (same parameters and state-dict names) and takes this path only where it
applies: CUDA tensors in bf16/fp16 (autocast included), Triton importable, exact GELU, no dropout, widths that
are multiples of 128 (hidden) and 64 (in/out); elsewhere it is timm's ``Mlp``. :func:`use_fused_mlp` switches
a built model's MLPs over. Correctness: ``experiments/test_fused_mlp.py`` (Triton's interpreter on CPU, bf16 on a GPU).
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: FusedMlp is then timm's Mlp
    triton = None

__all__ = ["FusedMlp", "fused_mlp_available", "use_fused_mlp"]

# Triton's interpreter (TRITON_INTERPRET=1, read when kernels are defined) runs the kernels on CPU tensors:
# the tests use it; it cannot autotune, so it gets one small fixed tile.
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_INTERPRET_TILE = {"BLOCK_M": 16, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 4}


def fused_mlp_available() -> bool:
    return triton is not None


if triton is not None:
    from triton.tools.tensor_descriptor import TensorDescriptor

    _INV_SQRT2 = tl.constexpr(0.7071067811865476)
    _INV_SQRT_2PI = tl.constexpr(0.3989422804014327)

    @triton.jit
    def _gemm_gelu(
        a_desc,
        b_desc,
        h_desc,
        out_desc,
        bias_ptr,
        part_ptr,
        M,
        N,  # fmt: skip
        K: tl.constexpr,
        BACKWARD: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        GROUP_M: tl.constexpr,
        NUM_PROGRAMS: tl.constexpr,
    ):
        """acc = A (M, K) @ B^T, B given as (N, K), in fp32; then
        forward:  h = acc + bias -> h_desc; gelu(h) -> out_desc
        backward: dh = acc * gelu'(h from h_desc) -> out_desc; column sums of dh -> part_ptr[row tile]
        Persistent: NUM_PROGRAMS programs walk the output tiles, so the loads of a tile's first K steps
        overlap the previous tile's epilogue (K is short: 384-1024). TMA descriptors zero-fill reads past M
        and clip writes there. The caller guarantees N % BLOCK_N == 0 and K % BLOCK_K == 0."""
        num_pid_m = tl.cdiv(M, BLOCK_M)
        num_pid_n = N // BLOCK_N
        per_group = GROUP_M * num_pid_n  # grouped order: programs at work together share B tiles in L2
        for tile in tl.range(tl.program_id(0), num_pid_m * num_pid_n, NUM_PROGRAMS, flatten=True):
            first_m = (tile // per_group) * GROUP_M
            size_m = tl.minimum(num_pid_m - first_m, GROUP_M)
            pid_m = first_m + (tile % per_group) % size_m
            pid_n = (tile % per_group) // size_m
            off_m = pid_m * BLOCK_M
            off_n = pid_n * BLOCK_N
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k in range(0, K // BLOCK_K):
                a = a_desc.load([off_m, k * BLOCK_K])
                b = b_desc.load([off_n, k * BLOCK_K])
                acc = tl.dot(a, b.T, acc)
            if BACKWARD:
                h = h_desc.load([off_m, off_n]).to(tl.float32)  # zeros past M, where acc is zero too
                cdf = 0.5 * (1.0 + tl.math.erf(h * _INV_SQRT2))
                pdf = tl.exp(-0.5 * h * h) * _INV_SQRT_2PI
                dh = (acc * (cdf + h * pdf)).to(out_desc.dtype)
                out_desc.store([off_m, off_n], dh)
                # the bias gradient sums what fc1's weight gradient sees: the rounded dh
                rn = off_n + tl.arange(0, BLOCK_N)
                tl.store(part_ptr + pid_m * N + rn, tl.sum(dh.to(tl.float32), axis=0))
            else:
                bias = tl.load(bias_ptr + off_n + tl.arange(0, BLOCK_N)).to(tl.float32)
                h = (acc + bias[None, :]).to(out_desc.dtype)
                h_desc.store([off_m, off_n], h)
                hf = h.to(tl.float32)  # GELU of the stored h, as an unfused GELU would see it
                out_desc.store(
                    [off_m, off_n], (0.5 * hf * (1.0 + tl.math.erf(hf * _INV_SQRT2))).to(out_desc.dtype)
                )

    def _prune(configs, named_args, **_):
        N, K = named_args["N"], named_args["K"]
        return [c for c in configs if N % c.kwargs["BLOCK_N"] == 0 and K % c.kwargs["BLOCK_K"] == 0]

    def _set_block_shapes(nargs: dict) -> None:
        bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
        nargs["a_desc"].block_shape = [bm, bk]
        nargs["b_desc"].block_shape = [bn, bk]
        nargs["h_desc"].block_shape = nargs["out_desc"].block_shape = [bm, bn]

    def _cfg(bm: int, bn: int, bk: int, warps: int, stages: int) -> triton.Config:
        return triton.Config(
            {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8},
            num_warps=warps,
            num_stages=stages,
            pre_hook=_set_block_shapes,
        )

    # Hopper-sized tiles (wgmma: 64-row multiples per warp group); configs that do not fit in shared
    # memory are dropped by the autotuner.
    _gemm_gelu_tuned = triton.autotune(
        configs=[
            _cfg(128, 256, 64, 8, 3),
            _cfg(128, 256, 64, 8, 2),
            _cfg(128, 128, 64, 8, 4),
            _cfg(128, 128, 64, 4, 4),
            _cfg(128, 128, 64, 4, 3),
            _cfg(128, 128, 128, 8, 3),
            _cfg(64, 256, 64, 4, 4),
            _cfg(64, 128, 64, 4, 4),
        ],
        key=["M", "N", "K", "BACKWARD"],
        prune_configs_by={"early_config_prune": _prune},
    )(_gemm_gelu)


def _launch(a, b, h, out, bias, part, backward: bool) -> int:
    """Run the kernel for A (M, K) @ B^T with B (N, K); returns the BLOCK_M that ran (rows of ``part``)."""
    M, K = a.shape
    N = b.shape[0]
    # block shapes are placeholders until the chosen config's pre-hook sets them
    descs = [TensorDescriptor.from_tensor(t, [16, 16]) for t in (a, b, h, out)]
    programs = torch.cuda.get_device_properties(a.device).multi_processor_count if a.is_cuda else 4
    args = (*descs, bias, part, M, N, K, backward)
    if _INTERPRET:
        t = _INTERPRET_TILE
        _set_block_shapes(
            {"a_desc": descs[0], "b_desc": descs[1], "h_desc": descs[2], "out_desc": descs[3], **t}
        )
        _gemm_gelu[(programs,)](*args, **t, NUM_PROGRAMS=programs)
        return t["BLOCK_M"]
    tiles = lambda meta: triton.cdiv(M, meta["BLOCK_M"]) * (N // meta["BLOCK_N"])  # noqa: E731
    _gemm_gelu_tuned[lambda meta: (min(programs, tiles(meta)),)](*args, NUM_PROGRAMS=programs)
    return _gemm_gelu_tuned.best_config.kwargs["BLOCK_M"]


@torch.library.custom_op("crossvideomae_bench::linear_gelu", mutates_args=())
def linear_gelu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K), weight (N, K), bias (N,) -> (h, gelu(h)), h = x @ weight^T + bias, each (M, N)."""
    M, N = x.shape[0], weight.shape[0]
    h, g = x.new_empty(M, N), x.new_empty(M, N)
    _launch(x, weight, h, g, bias, h, backward=False)
    return h, g


@linear_gelu.register_fake
def _(x, weight, bias):
    M, N = x.shape[0], weight.shape[0]
    return x.new_empty(M, N), x.new_empty(M, N)


@torch.library.custom_op("crossvideomae_bench::gelu_input_grad", mutates_args=())
def gelu_input_grad(
    dy: torch.Tensor, weight: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """dy (M, K) = gradient at fc2's output, weight (K, N) = fc2's weight, h (M, N) = fc1's output
    -> (dh = (dy @ weight) * gelu'(h) (M, N), its column sums (N,) in fp32)."""
    M, N = h.shape
    dh = torch.empty_like(h)
    part = torch.empty(triton.cdiv(M, 16), N, device=h.device, dtype=torch.float32)
    # the kernel reads B as (N, K): fc2's weight transposed (a 0.6 M-element copy at ViT-B's decoder)
    rows = _launch(dy, weight.t().contiguous(), h, dh, h, part, backward=True)
    return dh, part[: triton.cdiv(M, rows)].sum(0)


@gelu_input_grad.register_fake
def _(dy, weight, h):
    return torch.empty_like(h), h.new_empty(h.shape[1], dtype=torch.float32)


class _FusedMlpFunction(torch.autograd.Function):
    """fc2(gelu(fc1(x))) on (M, K) rows, all tensors in one low-precision dtype."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        h, g = torch.ops.crossvideomae_bench.linear_gelu(x, w1, b1)
        ctx.save_for_backward(x, w1, w2, h, g)
        return F.linear(g, w2, b2)

    @staticmethod
    def backward(ctx, dy):
        x, w1, w2, h, g = ctx.saved_tensors
        dy = dy.contiguous()
        dh, db1 = torch.ops.crossvideomae_bench.gelu_input_grad(dy, w2, h)
        return dh @ w1, dh.t() @ x, db1.to(w1.dtype), dy.t() @ g, dy.sum(0)


class FusedMlp(Mlp):
    """timm's ``Mlp`` whose fc1 -> GELU -> fc2 runs through the fused kernels where they apply."""

    def _fusable(self, x: torch.Tensor, dtype: torch.dtype) -> bool:
        fc1, fc2 = self.fc1, self.fc2
        return (
            triton is not None
            and x.is_cuda
            and dtype in (torch.bfloat16, torch.float16)
            and isinstance(fc1, nn.Linear)  # not use_conv
            and isinstance(self.act, nn.GELU)
            and self.act.approximate == "none"
            and isinstance(self.norm, nn.Identity)
            and fc1.bias is not None
            and fc2.bias is not None
            and not (self.training and (self.drop1.p > 0 or self.drop2.p > 0))
            and fc1.out_features % 128 == 0
            and fc1.in_features % 64 == 0
            and fc2.out_features % 64 == 0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = x.is_cuda and torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else x.dtype
        if not self._fusable(x, dtype):
            return super().forward(x)
        shape = x.shape
        params = (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        with torch.autocast("cuda", enabled=False):
            y = _FusedMlpFunction.apply(
                x.reshape(-1, shape[-1]).to(dtype).contiguous(), *(p.to(dtype) for p in params)
            )
        return y.reshape(*shape[:-1], y.shape[-1])


def use_fused_mlp(model: nn.Module) -> nn.Module:
    """Switch every timm ``Mlp`` of ``model`` to :class:`FusedMlp` in place (same parameters, nothing copied)."""
    for module in model.modules():
        if type(module) is Mlp:
            module.__class__ = FusedMlp
    return model
