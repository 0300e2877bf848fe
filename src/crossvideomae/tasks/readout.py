"""``crossvideomae readout eval.checkpoint=PATH``: what pretraining bought, in one table.

The encoder of ``eval.checkpoint`` and the same architecture at random initialisation (``train.seed``) are
compared on three protocols over the same cached tokens: kNN retrieval (val clips query train clips, cosine of
train-mean-centred mean-pooled features; R@1, R@5), the linear probe on mean-pooled features and the attentive
probe on all tokens (Acc@1), for the motion label (``label``) and, on the synthetic dataset, the object kind
(``kind``). Tokens are extracted once per encoder in one decoding pass per split. Each attentive probe is kept
as ``attentive_probe-{pretrained|random}-{label|kind}.safetensors``: ``finetune eval.ft_head_init=`` starts
from it (LP-FT).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import Config, ConfigError
from ..engine.device import resolve_device
from ..engine.distributed import init_distributed, is_main_process
from ..eval.encoders import build_encoder, with_checkpoint_model
from ..eval.features import split_features
from ..eval.inputs import num_label_classes
from ..eval.probes import probe_protocol, retrieval_protocol

LABELS = {"label": "motion (label)", "kind": "object kind (kind)"}


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'label':<20} {'encoder':<11} {'kNN R@1':>8} {'kNN R@5':>8} {'linear Acc@1':>13} {'attentive Acc@1':>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{LABELS[r['label']]:<20} {r['encoder']:<11} {r['R@1']:>8.1f} {r['R@5']:>8.1f} "
            f"{r['probe_acc1']:>13.1f} {r['attn_acc1']:>16.1f}"
        )
    return "\n".join(lines)


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    if not cfg.eval.checkpoint:
        raise ConfigError("readout compares a pretrained encoder with random init: set eval.checkpoint=PATH")
    device = init_distributed(cfg.dist.backend) or resolve_device(cfg.train.device)
    cfg = with_checkpoint_model(cfg)
    pretrained, source = build_encoder(cfg)
    random_init, random_source = build_encoder(cfg, checkpoint="")
    encoders = {"pretrained": pretrained.to(device), "random": random_init.to(device)}
    feats = split_features(cfg, {name: enc.forward_features for name, enc in encoders.items()}, device)
    train, val = feats["train"]["rows"], feats["val"]["rows"]
    for split in (train, val):  # "<name>": mean-pooled (N, D) for kNN and the linear probe; tokens beside it
        for name, enc in encoders.items():
            split[f"{name}_tokens"] = split[name]
            split[name] = enc.forward_head(split[name])
    labels = [lab for lab in LABELS if bool((train[lab] >= 0).all()) and bool((val[lab] >= 0).all())]
    rows = []
    for label in labels:
        num_classes = num_label_classes(
            feats["train"]["dataset"], label, torch.cat([train[label], val[label]])
        )
        for name in encoders:
            recall = retrieval_protocol(train, val, name, label, (1, 5), cfg.eval.knn_center)
            probe = probe_protocol(train, val, name, label, num_classes, cfg, device)
            attn = probe_protocol(
                train, val, f"{name}_tokens", label, num_classes, cfg, device, kind="attentive",
                save_path=out_dir / f"attentive_probe-{name}-{label}.safetensors" if is_main_process() else None,
            )  # fmt: skip
            rows.append(
                {
                    "label": label,
                    "encoder": name,
                    "num_classes": num_classes,
                    **recall,
                    "probe_acc1": probe["acc1"],
                    "probe_acc5": probe["acc5"],
                    "probe_train_acc1": probe["train_acc1"],
                    "attn_acc1": attn["acc1"],
                    "attn_acc5": attn["acc5"],
                    "attn_train_acc1": attn["train_acc1"],
                }
            )
    table = format_table(rows)
    if is_main_process():
        print(table)
        (out_dir / "readout.txt").write_text(table + "\n")
    return {
        "encoder": source,
        "random_init": random_source,
        "table": rows,
        "num_train": int(train["index"].numel()),
        "num_val": int(val["index"].numel()),
        "skipped": {split: feats[split]["skipped"] for split in feats},
        "probe": {"epochs": cfg.eval.epochs, "lr": cfg.eval.lr, "batch_size": cfg.eval.batch_size},
        "attentive_probe": {
            "epochs": cfg.eval.attn_epochs,
            "lr": cfg.eval.attn_lr,
            "weight_decay": cfg.eval.attn_weight_decay,
            "batch_size": cfg.eval.attn_batch_size,
        },
        "knn_center": cfg.eval.knn_center,
    }
