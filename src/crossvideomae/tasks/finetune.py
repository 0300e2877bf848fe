"""``crossvideomae finetune``: fine-tune an encoder for classification, then the multi-view test.

The paper's recipe (supp. Table 3; fields ``eval.ft_*`` and the augmentation fields of ``eval``): AdamW
(0.9, 0.999), weight decay 0.05, lr ``eval.ft_base_lr`` x global batch / 256 with layer-wise decay 0.75
(timm's ``param_groups_layer_decay``), drop path 0.1, dropout before the head, label smoothing 0.1, mixup 0.8 /
cutmix 1.0 (timm ``Mixup``, soft targets), RandAugment (9, 0.5) on the training clips, random erasing 0.25,
repeated augmentation (``eval.repeated_aug`` differently augmented clips of each video in the same batch,
VideoMAE's ``num_sample``), warm-up then cosine per step, for ``eval.epochs`` epochs. Training runs in the
shared loop (``engine.train.fit``: bf16 on CUDA, accumulation, clipping, checkpoints, ``--resume``).

With ``eval.ft_pool=attentive eval.ft_head_init=PROBE`` the pooling and head start from an attentive probe that
``readout`` fitted on the frozen encoder (LP-FT: probe first, then fine-tune everything).

Video clips are (B, C, T, H, W); erasing and cutmix see them as (B, C*T, H, W), so a box covers the same
place in every frame and the motion inside the clip is not broken.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from timm.optim import param_groups_layer_decay
from torch.utils.data import Dataset

from ..config import Config
from ..engine.distributed import barrier
from ..engine.train import fit
from ..eval.encoders import build_encoder, with_checkpoint_model
from ..eval.features import multiview_test
from ..eval.heads import Classifier
from ..eval.inputs import collate_fn, eval_dataset
from ..eval.probes import select_labels


class Repeated(Dataset):
    """Each item holds ``r`` independently augmented draws of one video, stacked on a leading dim."""

    def __init__(self, dataset: Dataset, r: int):
        self.dataset, self.r = dataset, r

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        draws = [self.dataset[index] for _ in range(self.r)]
        item = {k: torch.stack([torch.as_tensor(d[k]) for d in draws]) for k in draws[0] if k != "skipped"}
        item["skipped"] = [s for d in draws for s in d.get("skipped", [])]
        return item


def repeated_collate(items: list[dict]) -> dict:
    """Collate ``Repeated`` items and fold the repeat dim into the batch: (B, r, ...) -> (B*r, ...)."""
    skipped = [s for it in items for s in it["skipped"]]
    tensors = [{k: v for k, v in it.items() if k != "skipped"} for it in items]
    batch = torch.utils.data.default_collate(tensors)  # (B, r, ...) each
    return {**{k: v.flatten(0, 1) for k, v in batch.items()}, "skipped": skipped}


def finetune_config(cfg: Config) -> Config:
    """``cfg`` with the ``eval.ft_*`` recipe in the optimiser, model and epoch fields the training loop reads."""
    e = cfg.eval
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, drop_path=e.ft_drop_path),
        optim=dataclasses.replace(
            cfg.optim,
            lr=0.0,  # the recipe's base lr, scaled by the global batch, whatever optim.lr a preset sets
            base_lr=e.ft_base_lr,
            betas=e.ft_betas,
            weight_decay=e.ft_weight_decay,
            warmup_epochs=e.ft_warmup_epochs,
        ),
        train=dataclasses.replace(cfg.train, epochs=e.epochs),
    )


def num_classes_of(cfg: Config, dataset: Dataset) -> int:
    if cfg.eval.num_classes:
        return cfg.eval.num_classes
    if cfg.eval.label == "kind":
        kinds = torch.tensor([r.kind for r in dataset.records])
        return int(select_labels({"kind": kinds}, "kind").max()) + 1
    return int(dataset.num_classes)


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    cfg = finetune_config(with_checkpoint_model(cfg))
    e = cfg.eval
    train_set = eval_dataset(cfg, "train", train=True)
    num_classes = num_classes_of(cfg, train_set)
    encoder, source = build_encoder(cfg)
    model = Classifier(encoder, num_classes, dropout=e.dropout, pool=e.ft_pool)
    head_init = model.load_head(e.ft_head_init) if e.ft_head_init else None
    groups = param_groups_layer_decay(
        model,
        weight_decay=e.ft_weight_decay,
        no_weight_decay_list=("*pos_embed*", "*cls_token*"),
        layer_decay=e.ft_layer_decay,
    )

    mixing = e.mixup > 0 or e.cutmix > 0
    mixup = (
        Mixup(e.mixup, e.cutmix, label_smoothing=e.label_smoothing, num_classes=num_classes)
        if mixing
        else None
    )
    criterion = (
        SoftTargetCrossEntropy() if mixing else torch.nn.CrossEntropyLoss(label_smoothing=e.label_smoothing)
    )
    erasers: dict[torch.device, RandomErasing] = {}

    def loss_fn(m: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["video"] if "video" in batch else batch["image"]
        y = batch[e.label]
        flat = x.flatten(1, -3)  # (B, C*T, H, W): one erasing box / cutmix box for every frame
        if e.random_erasing > 0:
            eraser = erasers.setdefault(
                x.device, RandomErasing(e.random_erasing, mode="pixel", device=x.device)
            )
            flat = eraser(flat)
        if mixup is not None:
            flat, y = mixup(flat, y)
        return {"total": criterion(m(flat.view_as(x)), y)}

    data = Repeated(train_set, e.repeated_aug) if e.repeated_aug > 1 else train_set
    collate = repeated_collate if e.repeated_aug > 1 else collate_fn(cfg)
    model.train()
    results = fit(cfg, model, loss_fn, data, collate, out_dir, resume=args.resume, groups=groups)
    barrier()
    if results.get("stopped_by") is None:  # a signal stopped training: test after --resume finishes it
        results["test"] = multiview_test(cfg, model, next(model.parameters()).device, out_dir)
        t = results["test"]
        print(
            f"multi-view test ({t['views']} views, {e.label}): Acc@1 {t['acc1']:.2f}  Acc@5 {t['acc5']:.2f}"
        )
    results.update({"encoder": source, "head_init": head_init, "label": e.label, "num_classes": num_classes})
    results["checkpoint"] = str(out_dir / "checkpoint-last.pth")
    return results
