"""How hard each pretraining loss term pulls on the video encoder: the norm of every term's gradient with respect
to the video encoder's parameters, on real pretraining batches, and the ratio of the weighted contrastive terms'
gradient, λ_c·∇(L_intra + L_cross), to the reconstruction's, λ_rl·∇L_rl.

The ratio says at which λ_c the contrastive terms and the reconstruction weigh the same on the encoder
(λ_c = 1 / ratio at λ_c = 1, the gradient being linear in λ_c). By default the model is at initialisation
(``train.seed``); ``init.model=CHECKPOINT`` measures a pretrained one. The forward pass runs in float32, on
``train.device`` (auto: a GPU when there is one).

    crossvideomae synth -c vits_study -o runs/grad_data synth.num_train=96 synth.num_val=8
    python benchmarks/learning/grad_balance.py -c vits_study --batches 3 --seeds 0,1 \\
        data.train_list=runs/grad_data/train.txt data.val_list=runs/grad_data/val.txt data.cache=none \\
        data.batch_size=32 train.device=cpu
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from crossvideomae.config import load_config
from crossvideomae.data import build_pretrain_dataset, pretrain_collate
from crossvideomae.data.device_augment import pretrain_inputs
from crossvideomae.engine.device import resolve_device
from crossvideomae.engine.prefetch import to_device
from crossvideomae.tasks.pretrain import build_pretraining, pretrain_prepare

TERMS = ("intra_video", "intra_frame", "cross_video", "cross_frame", "rl", "mse")


def grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.sqrt(sum(g.double().pow(2).sum() for g in grads if g is not None)).item()


def measure(cfg, seed: int, batches: int) -> list[dict]:
    """Per batch: every term's value and gradient norm on the video encoder, the weighted groups' norms."""
    torch.manual_seed(seed)
    cfg.train.seed = seed
    device = resolve_device(cfg.train.device)
    model, criterion = build_pretraining(cfg)
    model.to(device)
    params = [p for p in model.video_encoder.parameters() if p.requires_grad]
    dataset = build_pretrain_dataset(cfg, split="train")
    prepare = pretrain_prepare(cfg, pretrain_inputs(cfg))
    bs, rows = cfg.data.batch_size, []
    for b in range(batches):
        items = [dataset[i] for i in range(b * bs, (b + 1) * bs)]
        batch = prepare(to_device(pretrain_collate(items), device))
        out = model(
            batch["video1"], batch["video2"], batch["images"], batch["frame_index1"], batch["frame_index2"]
        )
        terms = criterion(out)
        row = {
            k: {"value": terms[k].item(), "grad_norm": grad_norm(terms[k], params)}
            for k in TERMS
            if k in terms
        }
        contrast = [terms[g] for g in ("intra", "cross") if g in terms]
        if contrast and "rl" in terms:
            row["contrastive_weighted_grad_norm"] = grad_norm(cfg.loss.lambda_c * sum(contrast), params)
            row["rl_weighted_grad_norm"] = grad_norm(cfg.loss.lambda_rl * terms["rl"], params)
            row["ratio"] = row["contrastive_weighted_grad_norm"] / row["rl_weighted_grad_norm"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", default="vits_study")
    p.add_argument("--batches", type=int, default=3, help="batches per seed")
    p.add_argument(
        "--seeds",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[0, 1],
        help="model initialisations, 0,1",
    )
    p.add_argument("--json", default="", help="also write the result here")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    rows = {seed: measure(cfg, seed, args.batches) for seed in args.seeds}
    flat = [r for rs in rows.values() for r in rs]
    summary = {k: statistics.mean(r[k]["grad_norm"] for r in flat) for k in TERMS if k in flat[0]}
    out = {
        "config": args.config,
        "overrides": args.overrides,
        "lambda_c": cfg.loss.lambda_c,
        "batch_size": cfg.data.batch_size,
        "seeds": args.seeds,
        "batches_per_seed": args.batches,
        "mean_grad_norm": summary,
        "per_seed": rows,
    }
    if "ratio" in flat[0]:
        ratios = [r["ratio"] for r in flat]
        out["ratio_mean"], out["ratio_min"], out["ratio_max"] = (
            statistics.mean(ratios),
            min(ratios),
            max(ratios),
        )
        out["lambda_c_for_equal_pull"] = cfg.loss.lambda_c / out["ratio_mean"]
    print(json.dumps({k: v for k, v in out.items() if k != "per_seed"}, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
