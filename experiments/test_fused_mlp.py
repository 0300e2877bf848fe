"""The experimental fused MLP (experiments/fused_mlp.py, measured in docs/PERFORMANCE-LOG.md "Run 6") computes timm's
Mlp: its Triton kernels against a float64 reference, on CPU through Triton's interpreter and on a GPU (skipped
without one), and its fallback everywhere else. The speed comparison is only meaningful if this holds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from fused_mlp import FusedMlp, fused_mlp_available, use_fused_mlp  # next to this file
from timm.layers import Mlp

from crossvideomae.config import load_config
from crossvideomae.models import build_model

needs_triton = pytest.mark.skipif(not fused_mlp_available(), reason="Triton is not installed")
needs_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and fused_mlp_available()), reason="needs a CUDA GPU and Triton"
)


def _reference(x, w1, b1, w2, b2, dy):
    """Output and gradients in float64 from the same (rounded) inputs."""
    leaves = [t.detach().double().requires_grad_() for t in (x, w1, b1, w2, b2)]
    y = F.linear(F.gelu(F.linear(leaves[0], leaves[1], leaves[2])), leaves[3], leaves[4])
    y.backward(dy.double())
    return y.detach(), [t.grad for t in leaves]


# The interpreter has no bfloat16 (numpy), so the CPU check runs the kernels in float32 and float16; the GPU
# test below covers bfloat16.
_INTERPRETED = textwrap.dedent(
    """
    import sys, torch
    from fused_mlp import _FusedMlpFunction
    from test_fused_mlp import _reference
    dtype = getattr(torch, sys.argv[1])
    g = torch.Generator().manual_seed(0)
    M, K, H, O = 37, 64, 256, 128  # 37 rows: the last row tile is partly outside
    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype).requires_grad_()
    x, w1, b1, w2, b2 = rand(M, K), rand(H, K, scale=0.2), rand(H, scale=0.5), rand(O, H, scale=0.1), rand(O)
    y = _FusedMlpFunction.apply(x, w1, b1, w2, b2)
    dy = torch.randn(M, O, generator=g).to(dtype)
    y.backward(dy)
    ref_y, ref_grads = _reference(x, w1, b1, w2, b2, dy)
    errs = [((y.double() - ref_y).abs().max() / ref_y.abs().max()).item()]
    for t, r in zip((x, w1, b1, w2, b2), ref_grads, strict=True):
        assert t.grad.dtype == dtype and t.grad.shape == t.shape
        errs.append(((t.grad.double() - r).abs().max() / r.abs().max()).item())
    print(" ".join(f"{e:.3e}" for e in errs))
    """
)


@needs_triton
@pytest.mark.skipif(
    fused_mlp_available() and tuple(int(v) for v in __import__("triton").__version__.split(".")[:2]) < (3, 8),
    reason="Triton < 3.8's interpreter cannot run loops with run-time bounds under numpy 2",
)
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 5e-3)])
def test_kernels_match_float64_in_triton_interpreter(dtype, tol):
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, "-c", _INTERPRETED, dtype], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    errs = [float(e) for e in run.stdout.split()]
    assert len(errs) == 6 and max(errs) < tol, errs  # relative max errors: y, dx, dW1, db1, dW2, db2


def test_cpu_falls_back_to_timm_mlp_with_the_same_parameters():
    torch.manual_seed(0)
    ref = Mlp(64, 256)
    fused = FusedMlp(64, 256)
    assert list(fused.state_dict()) == list(ref.state_dict())
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 64)
    assert torch.equal(fused(x), ref(x))


def test_use_fused_mlp_switches_every_mlp_and_keeps_the_state_dict():
    torch.manual_seed(0)
    plain = build_model(load_config("tiny", []))
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    fused = use_fused_mlp(plain)
    mlps = [m for m in fused.modules() if isinstance(m, Mlp)]
    assert len(mlps) == sum(
        len(b) for b in (fused.video_encoder.blocks, fused.image_encoder.blocks, fused.decoder.blocks)
    )
    assert all(type(m) is FusedMlp for m in mlps)
    after = fused.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)


@needs_gpu
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("rows,width", [(2 * 157, 768), (3 * 300, 384)])  # encoder- and decoder-like
def test_gpu_bf16_autocast_matches_float64_as_closely_as_timm_mlp(rows, width, compiled):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    ref_mlp = Mlp(width, 4 * width).to(dev)
    fused = FusedMlp(width, 4 * width).to(dev)
    fused.load_state_dict(ref_mlp.state_dict())
    x = torch.randn(rows // 2, 2, width, device=dev)  # fp32 in, as LayerNorm gives it under autocast
    dy = torch.randn(rows // 2, 2, width, device=dev)

    def run(module):
        fn = torch.compile(module) if compiled else module
        inp = x.clone().requires_grad_()
        module.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = fn(inp)
        y.backward(dy.to(y.dtype))
        grads = [inp.grad, *(p.grad for p in module.parameters())]
        return y, grads

    y_f, g_f = run(fused)
    y_t, g_t = run(ref_mlp)
    assert y_f.dtype == y_t.dtype == torch.bfloat16
    p = dict(ref_mlp.named_parameters())
    ref_y, ref_g = _reference(
        x.reshape(-1, width),
        p["fc1.weight"],
        p["fc1.bias"],
        p["fc2.weight"],
        p["fc2.bias"],
        dy.to(torch.bfloat16).reshape(-1, width),
    )
    ref_g = [ref_g[0].reshape(x.shape), *ref_g[1:]]

    def err(a, r):
        return ((a.double().reshape(r.shape) - r).abs().max() / r.abs().max()).item()

    for got, timm_out, ref in [(y_f, y_t, ref_y), *zip(g_f, g_t, ref_g, strict=True)]:
        assert got.dtype == timm_out.dtype and got.shape == timm_out.shape
        # both round to bf16 along the way; the fused path must be no less accurate than timm's (+ slack)
        assert err(got, ref) <= 1.5 * err(timm_out, ref) + 2e-3, (err(got, ref), err(timm_out, ref))
