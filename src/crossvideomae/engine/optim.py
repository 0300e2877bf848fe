"""Optimiser set-up: weight-decay parameter groups, AdamW, the lr rule and the per-step schedule."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.optim import param_groups_weight_decay

from ..config import OptimConfig

# Parameters that never get weight decay besides biases and norm weights (anything 1-D), as timm patterns.
NO_DECAY_PATTERNS = ("*pos_embed*", "*cls_token*", "*mask_token*")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, always both and in this order (checkpoints store the optimiser by group): decayed weights,
    and the rest (norms, biases, position tables, tokens) without decay; timm's ``param_groups_weight_decay``
    decides which is which."""
    split = param_groups_weight_decay(
        model, 1.0, no_weight_decay_list=NO_DECAY_PATTERNS
    )  # 1.0: mark the decayed
    decayed = {g["weight_decay"] > 0: g["params"] for g in split}
    return [
        {"params": decayed.get(True, []), "weight_decay": weight_decay},
        {"params": decayed.get(False, []), "weight_decay": 0.0},
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
