"""Pixel baselines of the synthetic dataset: how much of the motion label a model-free feature recovers.

kNN (cosine, k = 1) from the val clips to the train clips, as ``crossvideomae retrieve`` does for encoders, on
4x4-pooled test clips of the ``tiny`` preset: raw clip, its time average (order-free) and its frame
differences. A pretrained encoder should land well above the raw-clip and time-average rows.

    python benchmarks/synth_baselines.py data/synth
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from crossvideomae.config import load_config
from crossvideomae.data import build_eval_dataset


def clips(cfg, list_path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ds = build_eval_dataset(cfg, list_path, train=False)
    x = torch.stack([ds[i]["video"] for i in range(len(ds))])  # (N, 3, T, S, S)
    return (
        F.avg_pool3d(x, (1, 4, 4)),
        torch.tensor([r.label for r in ds.records]),
        torch.tensor([r.kind for r in ds.records]),
    )


def recall_at_1(train: torch.Tensor, val: torch.Tensor, y_train: torch.Tensor, y_val: torch.Tensor) -> float:
    a, b = F.normalize(train.flatten(1), dim=1), F.normalize(val.flatten(1), dim=1)
    return (y_train[(b @ a.T).argmax(1)] == y_val).float().mean().item()


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "data/synth"
    cfg = load_config("tiny", [])
    xt, yt, kt = clips(cfg, f"{root}/train.txt")
    xv, yv, kv = clips(cfg, f"{root}/val.txt")
    diff = lambda x: x[:, :, 1:] - x[:, :, :-1]  # noqa: E731
    print(f"chance (motion): {1 / 12:.3f}")
    print(
        f"raw clip        motion R@1 {recall_at_1(xt, xv, yt, yv):.3f}   kind R@1 {recall_at_1(xt, xv, kt, kv):.3f}"
    )
    print(f"time average    motion R@1 {recall_at_1(xt.mean(2), xv.mean(2), yt, yv):.3f}")
    print(f"frame diffs     motion R@1 {recall_at_1(diff(xt), diff(xv), yt, yv):.3f}")


if __name__ == "__main__":
    main()
