"""The Hugging Face baseline's analytic FLOPs (``perf.videomae_flops``) against PyTorch's ``FlopCounterMode`` over
a real training step on the CPU (``perf.pretrain_flops`` is checked the same way in test_perf_options.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from crossvideomae import perf
from crossvideomae.config import load_config, vit_dims


def test_videomae_flops_match_the_flop_counter():
    pytest.importorskip("transformers")
    cfg = load_config(None, TINY + ["data.batch_size=2", "mask.video_ratio=0.5"])
    step, make_batch = perf.videomae_step(cfg, torch.device("cpu"))
    batch = make_batch()
    with FlopCounterMode(display=False) as counter, sdpa_kernel([SDPBackend.MATH]):
        step(batch)
    m = cfg.model
    width, _, _ = vit_dims(m)
    tokens = (m.num_frames // m.tubelet_size) * (m.img_size // m.patch_size) ** 2
    hidden = tokens // 2
    pixels = 3 * m.tubelet_size * m.patch_size**2
    # Hugging Face embeds every tubelet and drops the hidden ones after; model FLOPs count the visible ones only
    # (forward and weight gradient: the pixels need no gradient)
    embed_hidden = cfg.data.batch_size * 2 * (2 * hidden * pixels * width)
    counted = counter.get_total_flops()
    assert counted == pytest.approx(perf.videomae_flops(cfg) + embed_hidden, rel=1e-9)  # no other products
