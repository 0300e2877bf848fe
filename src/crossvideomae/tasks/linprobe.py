"""``crossvideomae linprobe``: a probe on a frozen encoder (``eval.probe``).

linear (paper supp. Table 4): mean-pooled features of the centre clip are extracted once for the train and val
lists, then a BatchNorm (no affine) + linear layer is trained on them with SGD (``eval.lr``, momentum 0.9, no
weight decay, ``eval.warmup_epochs`` of warm-up then cosine, ``eval.epochs``) and scored on the val features.
attentive: every token of the centre clip is kept, and a learned query cross-attends over them before a
linear layer (``eval.attn_*``; docs/EVALUATION.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..engine.distributed import is_main_process
from ..eval.features import checkpoint_features
from ..eval.inputs import class_names, num_label_classes
from ..eval.probes import probe_protocol


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    kind = cfg.eval.probe
    cfg, source, feats, device = checkpoint_features(cfg, tokens=kind == "attentive")
    train, val = feats["train"]["rows"], feats["val"]["rows"]
    label = cfg.eval.label
    num_classes = num_label_classes(feats["train"]["dataset"], label, train[label], cfg.eval.num_classes)
    results: dict[str, Any] = {"encoder": source, "label": label, "num_classes": num_classes, "probe": kind}
    if is_main_process():  # every rank holds the same gathered features; one fits the probe
        names = class_names(cfg, feats["train"]["dataset"], label)
        png = out_dir / "confusion_matrix.png"
        results.update(
            probe_protocol(train, val, "encoder", label, num_classes, cfg, device, png, names, kind=kind)
        )
        print(f"{kind} probe ({label}): Acc@1 {results['acc1']:.2f}  Acc@5 {results['acc5']:.2f}")
    results["num_train"], results["num_val"] = int(train["index"].numel()), int(val["index"].numel())
    results["skipped"] = {split: feats[split]["skipped"] for split in feats}
    return results
