"""``crossvideomae retrieve``: video retrieval (paper supp. Table 8).

Every val (test) clip queries all train clips by cosine similarity of mean-pooled centre-clip features;
R@k = share of queries with a same-class clip among the k nearest (ties count against the query, see
``eval.metrics``). UCF101 / HMDB51 splits: lists from ``crossvideomae prepare`` with ``{split}`` in their
path, e.g. ``data.train_list=data/ucf101/train_split{split}.txt eval.split=2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..eval.features import checkpoint_features
from ..eval.inputs import list_path
from ..eval.probes import retrieval_protocol


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    cfg, source, feats, _ = checkpoint_features(cfg)
    train, val = feats["train"]["rows"], feats["val"]["rows"]
    recall = retrieval_protocol(train, val, "encoder", cfg.eval.label, cfg.eval.ks, cfg.eval.knn_center)
    print("retrieval (" + cfg.eval.label + "): " + "  ".join(f"{k} {v:.2f}" for k, v in recall.items()))
    return {
        "encoder": source,
        "label": cfg.eval.label,
        **recall,
        "knn_center": cfg.eval.knn_center,
        "gallery": list_path(cfg, "train"),
        "queries": list_path(cfg, "val"),
        "num_gallery": int(train["index"].numel()),
        "num_queries": int(val["index"].numel()),
        "skipped": {split: feats[split]["skipped"] for split in feats},
    }
