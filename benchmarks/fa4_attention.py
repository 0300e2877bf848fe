"""Decoder attention through FlashAttention-4 (``model.decoder_attention=fa4``, ``crossvideomae.fa4``) against
cuDNN's fused SDPA (timm's path, PyTorch's pick on Hopper), fwd + bwd of one call in bf16 on the step's three
attention shapes, and both against a float32 reference on a slice of each shape.

    python3 benchmarks/fa4_attention.py OUT_DIR        # writes OUT_DIR/fa4_attention.json

Needs CUDA and the flash-attn-4 package (``pip install 'crossvideomae[fa4]'``). The full step with and without
it: ``benchmarks/step_matrix.py OUT cudagraphs_fa4 cudagraphs``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from crossvideomae import perf
from crossvideomae.fa4 import fa4_fwd, sdpa_attention


def _timm_path(qkv: torch.Tensor) -> torch.Tensor:
    B, N, _, H, D = qkv.shape
    return sdpa_attention(qkv, D**-0.5).reshape(B, N, H * D)


def _fa4_path(qkv: torch.Tensor) -> torch.Tensor:
    B, N, _, H, D = qkv.shape
    return fa4_fwd(qkv, D**-0.5)[0].reshape(B, N, H * D)


def main() -> None:
    """Time fwd + bwd of one attention call (bf16) through cuDNN (timm's path) and FA4 on the step's shapes,
    and measure both against a float32 reference on a slice of each shape."""
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    shapes = {  # (B, N, H, D)
        "decoder 64x1568x6x64": (64, 1568, 6, 64),
        "encoder 64x157x12x64": (64, 157, 12, 64),
        "image 32x21x12x64": (32, 21, 12, 64),
    }
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    for name, (B, N, H, D) in shapes.items():
        torch.manual_seed(0)
        qkv = torch.randn(B, N, 3, H, D, device=device, dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn(B, N, H * D, device=device, dtype=torch.bfloat16)
        row: dict = {"gflop_fwd": 4 * B * H * N * N * D / 1e9}
        for label, path in (("cudnn", _timm_path), ("fa4", _fa4_path)):

            def fb(path=path, qkv=qkv, g=g):
                qkv.grad = None
                path(qkv).backward(g)

            for _ in range(3):
                fb()
            row[f"{label}_ms"] = statistics.median(perf.time_calls(fb, 30))
            row[f"{label}_tflops"] = 3.5 * row["gflop_fwd"] / row[f"{label}_ms"]
        # accuracy on the first two samples against float32 (the same bf16 inputs)
        x = qkv.detach()[:2].clone().requires_grad_()
        ref_x = x.detach().float().requires_grad_()
        gs = g[:2]
        ref = _timm_path(ref_x)
        ref.backward(gs.float())
        for label, path in (("cudnn", _timm_path), ("fa4", _fa4_path)):
            x.grad = None
            o = path(x)
            o.backward(gs)
            row[f"{label}_out_maxerr"] = float((o.float() - ref).abs().max())
            row[f"{label}_grad_maxerr"] = float((x.grad.float() - ref_x.grad).abs().max())
        row["fa4_speedup"] = row["cudnn_ms"] / row["fa4_ms"]
        res["shapes"][name] = row
        print(name, json.dumps(row), flush=True)
        (out_dir / "fa4_attention.json").write_text(json.dumps(res, indent=2))
    for name, row in res["shapes"].items():  # no worse than cuDNN's own bf16 error, with a little slack
        for what in ("out", "grad"):
            if row[f"fa4_{what}_maxerr"] > 2 * row[f"cudnn_{what}_maxerr"] + 1e-3:
                raise SystemExit(f"{name}: FA4 {what} error {row[f'fa4_{what}_maxerr']:.3g} vs cuDNN's")


if __name__ == "__main__":
    main()
