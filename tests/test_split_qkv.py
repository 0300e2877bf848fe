"""The split q / k / v projection of benchmarks/split_qkv.py (a step_matrix.py experiment) computes what timm's
fused projection computes: loss and every gradient of the model, in float64."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from conftest import assert_same_loss_and_grads, float64_batch, loss_and_grads

from crossvideomae.config import load_config
from crossvideomae.losses import CrossVideoMAELoss
from crossvideomae.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from split_qkv import split_qkv  # noqa: E402


def test_split_qkv_computes_the_fused_projection():
    cfg = load_config("tiny", ["mask.video_ratio=0.75", "data.batch_size=2"])
    torch.manual_seed(1)
    model = build_model(cfg).double()
    batch = float64_batch(cfg)
    criterion = CrossVideoMAELoss(cfg.loss)
    ref = loss_and_grads(model, criterion, batch)
    split_qkv(model)
    assert_same_loss_and_grads(loss_and_grads(model, criterion, batch), ref)
