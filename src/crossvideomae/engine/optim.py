"""Optimiser set-up: weight-decay parameter groups, AdamW, the lr rule and the per-step schedule."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..config import OptimConfig

# Parameters that never get weight decay besides biases and norm weights (anything 1-D).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and the rest (norms, biases, position tables, tokens) without decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or any(key in name for key in NO_DECAY_NAMES)
        (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """``optim.lr`` when set, else ``base_lr * global_batch / 256`` (the MAE / VideoMAE rule)."""
    return cfg.lr if cfg.lr > 0 else cfg.base_lr * global_batch / 256


def build_adamw(groups: list[dict], lr: float, cfg: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; the fused CUDA kernel on GPUs."""
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), fused=device.type == "cuda")


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float) -> float:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr; groups with an ``lr_scale`` (layer-wise decay) get ``lr * lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
