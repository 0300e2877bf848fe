"""Running encoders over an evaluation set: features and multi-view class probabilities, gathered in order.

Every rank sees a shard of the data (``DistributedSampler`` without shuffling); the results of all ranks are
gathered and sorted by dataset index, and the padding duplicates that the sampler adds are dropped, so every
rank ends with the same rows in dataset order, exactly as a single process would produce them.

A video that fails to decode is replaced by the dataset with another one, whose item then carries the other
video's ``index`` (and its ``(path, reason)`` in the batch's ``skipped`` list): the duplicate index is dropped
like the sampler's padding, so the broken video is left out rather than counted twice. The failures are
returned; :func:`check_bad_videos` holds them to ``data.max_bad_fraction`` as training does and reports them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ..engine.distributed import is_distributed, is_main_process, world_size

# Per-item fields carried next to the outputs (those the dataset provides).
META_KEYS = ("label", "kind", "index")


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int, collate_fn=None) -> DataLoader:
    """In-order loader; under torchrun each rank reads its own shard."""
    sampler = DistributedSampler(dataset, shuffle=False) if is_distributed() else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def gather_in_order(local: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate every rank's rows, sort them by ``index`` and keep the first row of each index."""
    parts = [local]
    if is_distributed():
        parts = [None] * world_size()
        dist.all_gather_object(parts, {k: v.cpu() for k, v in local.items()})
    parts = [p for p in parts if p]
    if not parts:
        raise RuntimeError("the evaluation set is empty")
    merged = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    order = torch.argsort(merged["index"], stable=True)
    merged = {k: v[order] for k, v in merged.items()}
    idx = merged["index"]
    first = torch.ones_like(idx, dtype=torch.bool)
    first[1:] = idx[1:] != idx[:-1]
    return {k: v[first] for k, v in merged.items()}


@torch.no_grad()
def collect(
    loader: DataLoader,
    outputs: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    device: torch.device,
    multiview: bool = False,
    amp: bool = True,
    desc: str = "features",
) -> tuple[dict[str, torch.Tensor], list]:
    """One pass over ``loader`` feeding every batch to each function in ``outputs``.

    Items hold ``video`` (C, T, H, W) or ``image`` (C, H, W); with ``multiview`` a video item is (V, C, T, H, W)
    and each function's output is averaged over the V views. Returns ({name: (N, K)} plus the META_KEYS the
    items carry, each (N,)) in dataset order, and the items' ``skipped`` entries of every rank. Rank 0 shows a
    progress bar named ``desc`` over its clips.
    """
    rows: dict[str, list[torch.Tensor]] = defaultdict(list)
    skipped: list = []
    use_amp = amp and device.type == "cuda"
    quiet = {} if is_main_process() else {"disable": True}  # rank 0 leaves it to tqdm (and TQDM_DISABLE)
    bar = tqdm(total=len(loader.sampler), desc=desc, unit="clip", leave=False, dynamic_ncols=True, **quiet)
    for batch in loader:
        x = batch["video"] if "video" in batch else batch["image"]
        skipped += batch.get("skipped", [])
        x = x.to(device, non_blocking=True)
        B = x.shape[0]
        if multiview:
            V = x.shape[1]
            x = x.flatten(0, 1)  # (B*V, C, T, H, W)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            for name, fn in outputs.items():
                y = fn(x).float()
                if multiview:
                    y = y.view(B, V, -1).mean(dim=1)  # (B, K): average over the views
                rows[name].append(y.cpu())
        for key in META_KEYS:
            if key in batch:
                rows[key].append(torch.as_tensor(batch[key]))
        bar.update(B)
    bar.close()
    local = {k: torch.cat(v) for k, v in rows.items()}  # empty when this rank's shard was empty
    if is_distributed():
        every: list = [None] * world_size()
        dist.all_gather_object(every, skipped)
        skipped = [s for part in every for s in part]
    return gather_in_order(local), skipped


def check_bad_videos(cfg, split: str, skipped: list[tuple[str, str]], size: int) -> list[str]:
    """The videos of one pass over ``split`` (``size`` videos) that failed to decode: more than
    ``data.max_bad_fraction`` of them stop the command (:class:`TooManyBadVideos`, as in training); fewer are
    reported on the console. Returns their ``"path: reason"`` lines for results.json."""
    from ..data import BadVideoLog

    bad = BadVideoLog(cfg.data.max_bad_fraction)
    bad.update(skipped)
    bad.check(size)
    if bad.files and is_main_process():
        print(f"{split}: {len(bad.files)} of {size} videos failed to decode and are left out (results.json)")
    return bad.files


def extract_features(
    encoders: Mapping[str, Callable],
    loader: DataLoader,
    device: torch.device,
    multiview: bool = False,
    desc: str = "features",
) -> tuple[dict[str, torch.Tensor], list]:
    """Features {name: (N, ...)} of several encoders (modules: mean-pooled (N, D); or any function of the clip
    batch, such as an encoder's ``forward_features`` for all tokens (N, L, D)) from one decoding pass (+
    label/kind/index)."""
    for enc in encoders.values():
        getattr(enc, "__self__", enc).eval()  # a bound method: its module
    return collect(loader, dict(encoders), device, multiview=multiview, desc=desc)


def predict_probs(
    model: nn.Module, loader: DataLoader, device: torch.device, multiview: bool = True
) -> tuple[dict[str, torch.Tensor], list]:
    """Class probabilities {"probs": (N, C), label, index}; with ``multiview`` averaged over the K clips x crops
    of each video."""
    model.eval()
    probs = {"probs": lambda x: model(x).float().softmax(dim=-1)}
    desc = "multi-view test" if multiview else "test"
    return collect(loader, probs, device, multiview=multiview, desc=desc)


def split_features(
    cfg, encoders: Mapping[str, nn.Module], device: torch.device, splits: tuple[str, ...] = ("train", "val")
) -> dict[str, dict]:
    """Features of every encoder on the centre clip of each video of each split, one decoding pass per split.

    Returns {split: {"rows": {name: (N, D), label, kind, index}, "skipped": ["path: reason", ...] (the videos
    left out, :func:`check_bad_videos`), "dataset": Dataset}}.
    """
    from .inputs import collate_fn, eval_dataset

    out = {}
    for split in splits:
        dataset = eval_dataset(cfg, split)
        loader = eval_loader(dataset, cfg.eval.batch_size, cfg.data.num_workers, collate_fn(cfg))
        rows, skipped = extract_features(encoders, loader, device, desc=f"features ({split})")
        skipped = check_bad_videos(cfg, split, skipped, len(dataset))
        out[split] = {"rows": rows, "skipped": skipped, "dataset": dataset}
    return out


def checkpoint_features(cfg, tokens: bool = False) -> tuple:
    """What ``linprobe`` and ``retrieve`` start with: join the process group, build ``eval.checkpoint``'s encoder
    (with the checkpoint's own model config when it has one) and extract the train and val features
    (mean-pooled (N, D), or with ``tokens`` every token (N, L, D) for the attentive probe).

    Returns (cfg with that model config, the encoder's source record, :func:`split_features`' dict, device).
    """
    from ..engine.device import resolve_device
    from ..engine.distributed import init_distributed
    from .encoders import build_encoder, with_checkpoint_model

    device = init_distributed(cfg.dist.backend) or resolve_device(cfg.train.device)
    cfg = with_checkpoint_model(cfg)
    encoder, source = build_encoder(cfg)
    encoder = encoder.to(device)
    fn = encoder.forward_features if tokens else encoder
    return cfg, source, split_features(cfg, {"encoder": fn}, device), device


def multiview_test(cfg, model: nn.Module, device: torch.device, out_dir=None) -> dict:
    """Multi-view test: ``eval.num_clips`` temporal clips x ``eval.num_crops`` spatial crops of every val video,
    softmax averaged; Acc@1, Acc@5, per-class accuracy, confusion matrix (``confusion_matrix.png`` in
    ``out_dir``). Images (``eval.encoder=image``) get the single centre crop."""
    from .inputs import class_names, collate_fn, eval_dataset
    from .metrics import classification_results
    from .probes import select_labels

    multiview = cfg.eval.encoder == "video"
    dataset = eval_dataset(cfg, "val", multiview=multiview)
    loader = eval_loader(dataset, cfg.eval.batch_size, cfg.data.num_workers, collate_fn(cfg))
    rows, skipped = predict_probs(model, loader, device, multiview)
    num_classes = rows["probs"].shape[1]
    png = out_dir / "confusion_matrix.png" if out_dir is not None else None
    names = class_names(cfg, dataset, cfg.eval.label)
    results = classification_results(
        rows["probs"], select_labels(rows, cfg.eval.label), num_classes, png, names
    )
    views = cfg.eval.num_clips * cfg.eval.num_crops if multiview else 1
    results.update({"views": views, "skipped": check_bad_videos(cfg, "val", skipped, len(dataset))})
    return results
