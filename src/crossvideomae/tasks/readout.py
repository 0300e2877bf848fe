"""``crossvideomae readout eval.checkpoint=PATH``: what pretraining bought, in one table.

The encoder of ``eval.checkpoint`` and the same architecture at random initialisation (``train.seed``) are
compared on two protocols over the same cached features: kNN retrieval (val clips query train clips, cosine;
R@1, R@5) and the linear probe (Acc@1), for the motion label (``label``) and, on the synthetic dataset, the
object kind (``kind``). Features are extracted once per encoder in one decoding pass per split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..engine.distributed import init_distributed, is_main_process
from ..engine.train import resolve_device
from ..eval.encoders import build_encoder, with_checkpoint_model
from ..eval.features import split_features
from ..eval.inputs import num_label_classes
from ..eval.probes import linear_probe_protocol, retrieval_protocol

LABELS = {"label": "motion (label)", "kind": "object kind (kind)"}


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'label':<20} {'encoder':<11} {'kNN R@1':>8} {'kNN R@5':>8} {'probe Acc@1':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{LABELS[r['label']]:<20} {r['encoder']:<11} {r['R@1']:>8.1f} {r['R@5']:>8.1f} {r['probe_acc1']:>12.1f}"
        )
    return "\n".join(lines)


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    if not cfg.eval.checkpoint:
        raise SystemExit("readout compares a pretrained encoder with random init: set eval.checkpoint=PATH")
    device = init_distributed(cfg.dist.backend) or resolve_device(cfg.train.device)
    cfg = with_checkpoint_model(cfg)
    pretrained, source = build_encoder(cfg)
    random_init, random_source = build_encoder(cfg, checkpoint="")
    encoders = {"pretrained": pretrained.to(device), "random": random_init.to(device)}
    feats = split_features(cfg, encoders, device)
    train, val = feats["train"]["rows"], feats["val"]["rows"]
    labels = [lab for lab in LABELS if bool((train[lab] >= 0).all()) and bool((val[lab] >= 0).all())]
    rows = []
    for label in labels:
        num_classes = num_label_classes(
            feats["train"]["dataset"], label, torch.cat([train[label], val[label]])
        )
        for name in encoders:
            recall = retrieval_protocol(train, val, name, label, (1, 5))
            probe = linear_probe_protocol(train, val, name, label, num_classes, cfg, device)
            rows.append(
                {
                    "label": label,
                    "encoder": name,
                    "num_classes": num_classes,
                    **recall,
                    "probe_acc1": probe["acc1"],
                    "probe_acc5": probe["acc5"],
                    "probe_train_acc1": probe["train_acc1"],
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
    }
