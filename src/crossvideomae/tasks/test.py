"""``crossvideomae test eval.checkpoint=PATH``: the multi-view test of a fine-tuned checkpoint (K clips x crops).

``eval.num_clips`` temporal clips x ``eval.num_crops`` spatial crops per val video, class probabilities
averaged; Acc@1, Acc@5, per-class accuracy and ``confusion_matrix.png``. The checkpoint's saved config gives
the architecture and the label the head was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..engine.device import resolve_device
from ..engine.distributed import init_distributed
from ..eval.encoders import load_classifier
from ..eval.features import multiview_test


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    device = init_distributed(cfg.dist.backend) or resolve_device(cfg.train.device)
    model, cfg, source = load_classifier(cfg)
    results = multiview_test(cfg, model.to(device), device, out_dir)
    print(
        f"multi-view test ({results['views']} views, {cfg.eval.label}): Acc@1 {results['acc1']:.2f}  Acc@5 {results['acc5']:.2f}"
    )
    return {"classifier": source, "label": cfg.eval.label, **results}
