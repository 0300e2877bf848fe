"""The baseline step: Hugging Face's ``VideoMAEForPreTraining`` of the configured size."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn as nn

from ..config import Config, vit_dims
from ..engine.optim import scaled_lr
from ..engine.step import TrainStep, build_step
from .flops import grids
from .timing import Batch


def videomae_step(cfg: Config, device: torch.device) -> tuple[TrainStep, Callable[[], Batch]]:
    """Hugging Face ``VideoMAEForPreTraining`` of the same size, SDPA attention, norm-pix loss, one view, a random
    mask of the configured video ratio per step, eager, in the same :class:`TrainStep` as ours (bf16 autocast,
    fused AdamW, gradient norm and finiteness check)."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    m = cfg.model
    width, depth, heads = vit_dims(m)
    hf = VideoMAEConfig(
        image_size=m.img_size,
        patch_size=m.patch_size,
        num_frames=m.num_frames,
        tubelet_size=m.tubelet_size,
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=int(width * m.mlp_ratio),
        qkv_bias=m.qkv_bias,
        use_mean_pooling=False,
        decoder_hidden_size=m.embed_dim,
        decoder_num_hidden_layers=m.decoder_depth,
        decoder_num_attention_heads=m.decoder_heads,
        decoder_intermediate_size=int(m.embed_dim * m.mlp_ratio),
        norm_pix_loss=True,
    )
    hf._attn_implementation = "sdpa"
    model = VideoMAEForPreTraining(hf).to(device).train()
    N, n, _, _, _ = grids(cfg)
    B = cfg.data.batch_size

    def loss_fn(m: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        noise = torch.rand(B, N, device=device)
        hidden = torch.ones(B, N, dtype=torch.bool, device=device).scatter(1, noise.argsort(1)[:, :n], False)
        return {"total": m(batch["pixel_values"], bool_masked_pos=hidden).loss}

    eager = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=False, cuda_graphs=False))
    step = build_step(eager, model, loss_fn, device, scaled_lr(cfg.optim, B))

    def make_batch() -> Batch:
        return {"pixel_values": torch.randn(B, m.num_frames, 3, m.img_size, m.img_size, device=device)}

    return step, make_batch
