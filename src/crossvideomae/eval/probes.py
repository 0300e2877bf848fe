"""Protocols on cached features: the linear probe (supp. Table 4), the attentive probe and kNN retrieval
(supp. Table 8).

Features are extracted once (the evaluation transform: centre clip, centre crop, no augmentation), so a
100-epoch probe costs seconds. The linear probe is MAE's: BatchNorm without affine + linear on mean-pooled
features, SGD with momentum 0.9, no weight decay, linear warm-up then cosine decay per step, cross-entropy.
The attentive probe reads every token of the frozen encoder (``eval.attn_*``: AdamW, 10 % warm-up, cosine).
kNN compares train-mean-centred, L2-normalised features (``eval.knn_center``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..config import Config, ConfigError, EvalConfig
from ..engine.optim import lr_at
from .heads import AttentiveProbe, LinearProbe
from .metrics import classification_results, recall_at_k, topk_accuracy

Rows = dict[str, torch.Tensor]  # collected columns of a split: features / tokens, label, kind, index


def _fit(
    probe: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    warmup_epochs: float,
    lr: float,
    seed: int,
    amp: bool = False,
) -> list[float]:
    """The probes' loop: shuffled batches of ``min(batch_size, N)`` (an incomplete last batch is dropped:
    BatchNorm needs more than one sample), linear warm-up then cosine per step, cross-entropy, bf16 autocast
    when ``amp``. Returns the epoch losses."""
    n, device = x.shape[0], x.device
    bs = min(batch_size, n)
    steps_per_epoch = n // bs
    total, warmup = epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    losses, step = [], 0
    probe.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        epoch_loss = 0.0
        for i in range(steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, lr, 0.0)
            idx = perm[i * bs : (i + 1) * bs]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(probe(x[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += loss.item()
            step += 1
        losses.append(epoch_loss / steps_per_epoch)
    probe.eval()
    return losses


def train_linear_probe(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: EvalConfig, seed: int, device: torch.device
) -> tuple[LinearProbe, list[float]]:
    """Fit a linear probe on features x (N, D) with labels y (N,): SGD (``eval.lr``, momentum 0.9, no weight
    decay), ``eval.warmup_epochs``, ``eval.epochs``, batch ``eval.batch_size``. Returns it (eval mode) and the
    epoch losses."""
    torch.manual_seed(seed)
    x, y = x.float().to(device), y.long().to(device)
    probe = LinearProbe(x.shape[1], num_classes).to(device)
    opt = torch.optim.SGD(probe.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=0.0)
    losses = _fit(probe, opt, x, y, cfg.epochs, cfg.batch_size, cfg.warmup_epochs, cfg.lr, seed)
    return probe, losses


def train_attentive_probe(
    tokens: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: EvalConfig, seed: int, device: torch.device
) -> tuple[AttentiveProbe, list[float]]:
    """Fit an attentive probe on frozen tokens (N, L, D) with labels y (N,): AdamW (``eval.attn_lr``,
    ``eval.attn_weight_decay``), a tenth of ``eval.attn_epochs`` of warm-up, batch ``eval.attn_batch_size``.
    The tokens stay on ``device`` (bf16 on CUDA) for the whole fit. Returns it (eval mode) and the losses."""
    torch.manual_seed(seed)
    amp = device.type == "cuda"
    # 2,000 ViT-S clips at 64²: 0.8 GB in bf16
    x = tokens.to(device, torch.bfloat16 if amp else torch.float32)
    y = y.long().to(device)
    probe = AttentiveProbe(x.shape[-1], num_classes).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.attn_lr, weight_decay=cfg.attn_weight_decay)
    e = cfg.attn_epochs
    losses = _fit(probe, opt, x, y, e, cfg.attn_batch_size, e / 10, cfg.attn_lr, seed, amp)
    return probe, losses


@torch.no_grad()
def probe_scores(probe: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits (N, C) of a fitted probe (linear on (N, D), attentive on (N, L, D)), returned on the CPU."""
    device = next(probe.parameters()).device
    amp = device.type == "cuda" and x.dim() == 3
    out = []
    for chunk in x.split(batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(probe(chunk.float().to(device)).float().cpu())
    return torch.cat(out)


def knn_retrieval(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int],
    center: bool = True,
) -> dict[str, float]:
    """Test clips query train clips by cosine similarity: {"R@k": %}. With ``center`` both sides are first
    centred by the train (gallery) mean: a component shared by every clip (a DC offset that random and
    pretrained ViT features carry) otherwise dominates the cosine."""
    if center:
        mean = train.float().mean(dim=0, keepdim=True)
        train, test = train.float() - mean, test.float() - mean
    recall = recall_at_k(test, test_labels, train, train_labels, ks)
    return {f"R@{k}": v for k, v in recall.items()}


def select_labels(rows: Rows, label: str) -> torch.Tensor:
    """The ``label`` | ``kind`` column of collected rows; kinds exist only on the synthetic dataset."""
    y = rows[label].long()
    if label == "kind" and bool((y < 0).any()):
        raise ConfigError(
            "eval.label=kind: these videos carry no object kind (only `crossvideomae synth` data does)"
        )
    return y


def probe_protocol(
    train: Rows,
    val: Rows,
    feature: str,
    label: str,
    num_classes: int,
    cfg: Config,
    device: torch.device,
    png_path=None,
    class_names=None,
    kind: str = "linear",
    save_path=None,
) -> dict:
    """Fit a ``kind`` probe (linear on mean-pooled (N, D) features | attentive on (N, L, D) tokens) on the train
    rows, score the val rows: Acc@1/5, per-class accuracy, confusion matrix (+ picture), train Acc@1. With
    ``save_path``, the fitted probe's weights are written there (safetensors)."""
    fit = train_attentive_probe if kind == "attentive" else train_linear_probe
    y_train, y_val = select_labels(train, label), select_labels(val, label)
    probe, losses = fit(train[feature], y_train, num_classes, cfg.eval, cfg.train.seed, device)
    if save_path is not None:
        save_file(
            {k: v.detach().float().cpu().contiguous() for k, v in probe.state_dict().items()}, save_path
        )
    results = classification_results(
        probe_scores(probe, val[feature]), y_val, num_classes, png_path, class_names
    )
    results["train_acc1"] = topk_accuracy(probe_scores(probe, train[feature]), y_train, (1,))[1]
    results["loss_first_epoch"], results["loss_last_epoch"] = losses[0], losses[-1]
    return results


def retrieval_protocol(
    train: Rows,
    val: Rows,
    feature: str,
    label: str,
    ks: Sequence[int],
    center: bool = True,
) -> dict[str, float]:
    """Val clips query train clips by cosine similarity of ``feature`` (train-mean-centred when ``center``):
    {"R@k": %}."""
    return knn_retrieval(
        train[feature], select_labels(train, label), val[feature], select_labels(val, label), ks, center
    )
