"""The reconstruction term L_rl alone (norm-pix targets of every tubelet + masked mean squared error), forward and
backward, compiled, at the ViT-B pretraining shapes (2 x 32 clips of 16x224x224, 1568 tokens of 1536 pixels):
how much of the step the target layout costs.

    patch_layout  the model's formulation: patchify the clips (pixels (pt, ph, pw, c) inside a token), per-token
                  mean / variance over the last dimension, squared error against the predictions
    video_stats   per-token statistics reduced in the clips' own layout (width fastest), target and error in
                  the token layout
    video_layout  statistics, target and error all in the clips' layout; the predictions are read through the
                  inverse permutation

    python3 benchmarks/target_bench.py OUT_DIR      (on a CUDA machine; writes OUT_DIR/target_bench.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from crossvideomae.models.crossvideomae import patchify

PT, P, EPS = 2, 16, 1e-6


def grid(videos: torch.Tensor) -> tuple[int, int, int, int, int]:
    B, C, T, H, W = videos.shape
    return B, C, T // PT, H // P, W // P


def patch_layout(pred, videos, hidden):
    x = patchify(videos.float(), PT, P)
    target = (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + EPS).sqrt()
    err = (pred.float() - target).pow(2).mean(-1)
    return (err * hidden).sum() / hidden.sum()


def _stats(videos):
    B, C, t, h, w = grid(videos)
    v = videos.float().view(B, C, t, PT, h, P, w, P)
    var, mean = torch.var_mean(v, dim=(1, 3, 5, 7), keepdim=True)
    return v, mean, var


def video_stats(pred, videos, hidden):
    B, C, t, h, w = grid(videos)
    _, mean, var = _stats(videos)
    x = patchify(videos.float(), PT, P)
    target = (x - mean.reshape(B, t * h * w, 1)) / (var.reshape(B, t * h * w, 1) + EPS).sqrt()
    err = (pred.float() - target).pow(2).mean(-1)
    return (err * hidden).sum() / hidden.sum()


def video_layout(pred, videos, hidden):
    B, C, t, h, w = grid(videos)
    v, mean, var = _stats(videos)
    target = (v - mean) / (var + EPS).sqrt()
    p = pred.view(B, t, h, w, PT, P, P, C).permute(0, 7, 1, 4, 2, 5, 3, 6).float()
    err = (p - target).pow(2).sum(dim=(1, 3, 5, 7)) / (C * PT * P * P)  # (B, t, h, w)
    return (err.flatten(1) * hidden).sum() / hidden.sum()


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    videos = torch.randn(64, 3, 16, 224, 224, device=dev, generator=g)
    pred = torch.randn(64, 1568, 1536, device=dev, generator=g, dtype=torch.bfloat16).requires_grad_()
    hidden = (torch.rand(64, 1568, device=dev, generator=g) < 0.9).float()
    res, ref = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}, None
    for fn in (patch_layout, video_stats, video_layout):
        f = torch.compile(fn)
        for _ in range(3):
            loss = f(pred, videos, hidden)
            loss.backward()
        grad = pred.grad.float().clone()
        pred.grad = None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(20):
            f(pred, videos, hidden).backward()
            pred.grad = None
        end.record()
        torch.cuda.synchronize()
        r = {"ms_fwd_bwd": start.elapsed_time(end) / 20, "loss": loss.item()}
        if ref is None:
            ref = (loss.item(), grad)
        else:
            r["loss_rel_diff"] = abs(loss.item() - ref[0]) / abs(ref[0])
            r["grad_max_abs_diff"] = (grad - ref[1]).abs().max().item()
        res[fn.__name__] = r
        print(fn.__name__, json.dumps(r), flush=True)
    (out / "target_bench.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
