"""Protocols on cached features: the linear probe (supp. Table 4) and kNN retrieval (supp. Table 8).

Features are extracted once (the evaluation transform: centre clip, centre crop, no augmentation), so a
100-epoch probe costs seconds. The probe is MAE's: BatchNorm without affine + linear, SGD with momentum 0.9,
no weight decay, linear warm-up then cosine decay per step, cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..config import Config, EvalConfig
from ..engine.optim import lr_at
from .heads import LinearProbe
from .metrics import classification_results, recall_at_k, topk_accuracy


def train_linear_probe(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: EvalConfig, seed: int, device: torch.device
) -> tuple[LinearProbe, list[float]]:
    """Fit a probe on features x (N, D) with labels y (N,); returns it (in eval mode) and the epoch losses.

    The batch is ``min(eval.batch_size, N)`` and incomplete last batches are dropped: BatchNorm needs more than
    one sample, and a fixed batch keeps the per-step schedule simple.
    """
    torch.manual_seed(seed)
    x, y = x.float().to(device), y.long().to(device)
    n = x.shape[0]
    probe = LinearProbe(x.shape[1], num_classes).to(device)
    opt = torch.optim.SGD(probe.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=0.0)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = n // bs
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    losses, step = [], 0
    probe.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        epoch_loss = 0.0
        for i in range(steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, warmup, cfg.lr, 0.0)
            idx = perm[i * bs : (i + 1) * bs]
            loss = F.cross_entropy(probe(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += loss.item()
            step += 1
        losses.append(epoch_loss / steps_per_epoch)
    return probe.eval(), losses


@torch.no_grad()
def probe_scores(probe: LinearProbe, x: torch.Tensor) -> torch.Tensor:
    """Logits (N, C) of a fitted probe, on the probe's device, returned on the CPU."""
    device = next(probe.parameters()).device
    return probe(x.float().to(device)).cpu()


def knn_retrieval(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int],
) -> dict[str, float]:
    """Test clips query train clips by cosine similarity: {"R@k": %}."""
    recall = recall_at_k(test, test_labels, train, train_labels, ks)
    return {f"R@{k}": v for k, v in recall.items()}


def select_labels(rows: dict[str, torch.Tensor], label: str) -> torch.Tensor:
    """The ``label`` | ``kind`` column of collected rows; kinds exist only on the synthetic dataset."""
    y = rows[label].long()
    if label == "kind" and bool((y < 0).any()):
        raise SystemExit(
            "eval.label=kind: these videos carry no object kind (only `crossvideomae synth` data does)"
        )
    return y


def linear_probe_protocol(
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    feature: str,
    label: str,
    num_classes: int,
    cfg: Config,
    device: torch.device,
    png_path=None,
    class_names=None,
) -> dict:
    """Fit on the train rows, score the val rows: Acc@1/5, per-class accuracy, confusion matrix (+ picture)."""
    y_train, y_val = select_labels(train, label), select_labels(val, label)
    probe, losses = train_linear_probe(train[feature], y_train, num_classes, cfg.eval, cfg.train.seed, device)
    results = classification_results(
        probe_scores(probe, val[feature]), y_val, num_classes, png_path, class_names
    )
    results["train_acc1"] = topk_accuracy(probe_scores(probe, train[feature]), y_train, (1,))[1]
    results["loss_first_epoch"], results["loss_last_epoch"] = losses[0], losses[-1]
    return results


def retrieval_protocol(
    train: dict[str, torch.Tensor], val: dict[str, torch.Tensor], feature: str, label: str, ks: Sequence[int]
) -> dict[str, float]:
    """Val clips query train clips by cosine similarity of ``feature``: {"R@k": %}."""
    return knn_retrieval(
        train[feature], select_labels(train, label), val[feature], select_labels(val, label), ks
    )
