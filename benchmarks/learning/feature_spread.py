"""How much of a mean-pooled clip feature is shared by every clip: the mean pairwise cosine between clips and
the per-dimension spread across clips against the features' size, for an encoder (default: random init).

    crossvideomae synth -c vits_study -o runs/spread_data synth.num_train=48 synth.num_val=12
    python benchmarks/learning/feature_spread.py -c vits_study data.train_list=runs/spread_data/train.txt \\
        data.val_list=runs/spread_data/val.txt train.device=cpu data.num_workers=0 eval.batch_size=16
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from crossvideomae.config import load_config
from crossvideomae.eval.encoders import build_encoder
from crossvideomae.eval.features import split_features


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", default="vits_study")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    device = torch.device(cfg.train.device if cfg.train.device != "auto" else "cpu")
    encoder, source = build_encoder(cfg)
    f = split_features(cfg, {"e": encoder.to(device)}, device, splits=("train",))["train"]["rows"]["e"]
    n = F.normalize(f, dim=1)
    off_diagonal = ~torch.eye(len(f), dtype=torch.bool)
    out = {
        "encoder": source,
        "clips": len(f),
        "mean_pairwise_cosine": (n @ n.T)[off_diagonal].mean().item(),
        "spread_across_clips_per_dim": f.std(dim=0).mean().item(),
        "mean_abs_feature_per_dim": f.abs().mean().item(),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
