"""The split q / k / v projection of benchmarks/split_qkv.py (a step_matrix.py experiment) computes what timm's
fused projection computes: loss and every gradient of the model, in float64."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn

from crossvideomae.config import load_config
from crossvideomae.losses import CrossVideoMAELoss
from crossvideomae.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from split_qkv import split_qkv  # noqa: E402


def _loss_and_grads(model: nn.Module, cfg, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # the masks
    model.zero_grad()
    loss = CrossVideoMAELoss(cfg.loss)(model(*batch))["total"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_split_qkv_computes_the_fused_projection():
    cfg = load_config("tiny", ["mask.video_ratio=0.75"])
    m = cfg.model
    torch.manual_seed(1)
    model = build_model(cfg).double()
    B = 2
    batch = (
        torch.randn(B, 3, m.num_frames, m.img_size, m.img_size, dtype=torch.float64),
        torch.randn(B, 3, m.num_frames, m.img_size, m.img_size, dtype=torch.float64),
        torch.randn(B, cfg.data.num_sampled_frames, 3, m.img_size, m.img_size, dtype=torch.float64),
        torch.zeros(B, cfg.data.num_sampled_frames, dtype=torch.long),
        torch.ones(B, cfg.data.num_sampled_frames, dtype=torch.long),
    )
    ref_loss, ref_grads = _loss_and_grads(model, cfg, batch)
    split_qkv(model)
    loss, grads = _loss_and_grads(model, cfg, batch)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-10, atol=1e-12, msg=name)
