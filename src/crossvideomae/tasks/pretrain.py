"""``crossvideomae pretrain``: CrossVideoMAE pretraining; the video encoder is exported at the end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..engine.metrics_log import MetricsLog
from ..engine.optim import scaled_lr
from ..engine.step import LossFn, TrainStep, build_step
from ..engine.train import Hooks, RunState, fit
from ..losses import CrossVideoMAELoss
from ..models import CrossVideoMAE, build_model
from ..weights import save_weights

ENCODER_FILE = "video_encoder.safetensors"
Batch = dict[str, Any]


def build_pretraining(cfg: Config) -> tuple[CrossVideoMAE, CrossVideoMAELoss]:
    """The model (initialised from ``cfg.init`` checkpoints when given) and its loss."""
    model = build_model(cfg)
    init = cfg.init
    if init.model or init.video or init.image:
        from ..weights import load_pretrained  # prints a report of loaded / missing keys

        parts = [(model, init.model, "model"), (model.video_encoder, init.video, "video")]
        for module, path, kind in [*parts, (model.image_encoder, init.image, "image")]:
            if path:
                report = load_pretrained(module, path, kind=kind)
                if not init.allow_partial:
                    report.require_complete("init.allow_partial=true")
    if cfg.train.freeze_image:
        model.image_encoder.requires_grad_(False)
    return model, CrossVideoMAELoss(cfg.loss)


def export_video_encoder(model: CrossVideoMAE, cfg: Config, out_dir: Path) -> Path:
    """The product of pretraining: the video encoder as safetensors, its model config as JSON beside it."""
    return save_weights(model.video_encoder, out_dir / ENCODER_FILE, cfg.model)


def pretrain_loss(criterion: CrossVideoMAELoss) -> LossFn:
    """The loss of a pretraining step: the model on both views and the sampled frames, the loss terms, and the
    share of clips whose view 2 kept view 1's frames (logged with the terms)."""

    def loss_fn(m: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = m(
            batch["video1"], batch["video2"], batch["images"], batch["frame_index1"], batch["frame_index2"]
        )
        terms = criterion(out)
        if "temporal_fallback" in batch:
            terms["temporal_fallback"] = batch["temporal_fallback"].float().mean()
        return terms

    return loss_fn


def pretrain_prepare(cfg: Config, inputs: Callable[[Batch], Batch]) -> Callable[[Batch], Batch]:
    """What the step does to a batch on the device before the loss: ``inputs`` (the batch as it is, or its
    augmentation on the device), then the optional mixes inside the batch: each view's foreground on another
    clip's background (``aug.background_merge``: view 1 of clip i on clip i-r's, view 2 on clip i+r's, r =
    ``data.repeated_sampling``, since a video's r clips sit next to each other in the batch; so the two views and
    the sampled frames share no background), mixup / cutmix of view 2."""
    from ..data import merge_backgrounds, mix_video2

    a = cfg.aug

    def prepare(batch: Batch) -> Batch:
        batch = inputs(batch)
        if a.background_merge <= 0 and a.mixup <= 0 and a.cutmix <= 0:
            return batch
        r = cfg.data.repeated_sampling
        video1 = merge_backgrounds(batch["video1"], a.background_merge, r)
        video2 = merge_backgrounds(batch["video2"], a.background_merge, -r)
        return {**batch, "video1": video1, "video2": mix_video2(video2, a.mixup, a.cutmix)[0]}

    return prepare


def pretrain_step(
    cfg: Config, device: torch.device, inputs: Callable[[Batch], Batch] | None = None
) -> TrainStep:
    """The step of ``pretrain`` on ``device`` as ``bench``, the benchmarks and the tests take it: the model of
    :func:`build_pretraining` (seeded by the caller), its loss, AdamW with the engine's groups at the lr of this
    batch, and the config's precision, compilation and clipping, built by ``fit``'s :func:`build_step`."""
    model, criterion = build_pretraining(cfg)
    model.train()
    lr = scaled_lr(cfg.optim, cfg.data.batch_size * cfg.optim.accum_steps)
    prepare = pretrain_prepare(cfg, inputs or (lambda batch: batch))
    return build_step(cfg, model, pretrain_loss(criterion), device, lr, prepare=prepare)


def run_pretraining(cfg: Config, out_dir: Path, resume: bool, repeat_batch: int = 1) -> dict[str, Any]:
    """Shared by ``pretrain`` and ``adapt`` (which takes ``repeat_batch`` updates per batch)."""
    from ..data import BadVideoLog, build_pretrain_dataset, pretrain_collate
    from ..data.device_augment import loader_collate, pretrain_inputs

    torch.manual_seed(cfg.train.seed)  # initial weights from train.seed, not from whatever ran before
    model, criterion = build_pretraining(cfg)
    if cfg.data.source == "synthetic":  # bench's inputs: random batches made once on the device
        dataset, collate = SyntheticClips(cfg), SyntheticClips.collate
        inputs: Callable[[Batch], Batch] = SyntheticBatches(cfg)
    else:
        inputs = pretrain_inputs(cfg)  # the batch as it is, or augmented on the device (data.augment=device)
        dataset, collate = (
            build_pretrain_dataset(cfg, split="train"),
            loader_collate(inputs, pretrain_collate),
        )

    pictures = out_dir / "pictures"

    def on_epoch_end(epoch: int, m: CrossVideoMAE, batch: dict[str, Any], log: MetricsLog) -> None:
        every = cfg.train.viz_every
        last = epoch + 1 == cfg.train.epochs
        if (every and (epoch + 1) % every == 0) or last:
            from ..viz import reconstruction_grid

            m.eval()
            with torch.no_grad():
                path = pictures / f"reconstruction-epoch{epoch + 1:04d}.png"
                image = reconstruction_grid(m, batch, path, (cfg.data.mean, cfg.data.std))
            m.train()
            log.image("reconstruction", image, epoch + 1)

    def on_end(m: CrossVideoMAE, state: RunState) -> dict[str, Any]:
        from ..viz import plot_losses

        encoder = export_video_encoder(m, cfg, out_dir)
        curves = pictures / "losses.png"
        plot_losses(out_dir / "metrics.jsonl", curves)
        return {
            "video_encoder": str(encoder),
            "checkpoint": str(out_dir / "checkpoint-last.pth"),
            "loss_curves": str(curves),
        }

    model.train()
    results = fit(
        cfg,
        model,
        pretrain_loss(criterion),
        dataset,
        collate,
        out_dir,
        resume=resume,
        hooks=Hooks(on_epoch_end=on_epoch_end, on_end=on_end),
        repeat_batch=repeat_batch,
        bad_videos=BadVideoLog(cfg.data.max_bad_fraction),
        inputs=inputs,  # with data.prefetch, one step ahead on a side stream
        clips_per_item=cfg.data.repeated_sampling,  # a batch of B videos is B * r clips
        prepare=pretrain_prepare(cfg, lambda batch: batch),  # mixing draws from the training's random streams
    )
    return summarise_pretraining(results, model, "pretrain", "video_encoder")


def summarise_pretraining(
    results: dict[str, Any], model: torch.nn.Module, command: str, export: str
) -> dict[str, Any]:
    """``results`` with the model's size in millions of parameters; when the run finished and wrote its
    ``export`` (the results key of the exported encoder), one line saying so."""
    results["parameters_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    if results.get(export):
        final = results["final_terms"].get("total", float("nan"))
        print(
            f"{command}: {results['steps']} steps in {results['wall_time_s']:.0f} s, final mean loss {final:.4f}; "
            f"{export.replace('_', ' ')} -> {results[export]}"
        )
    return results


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    return run_pretraining(cfg, out_dir, resume=args.resume)


# ------------------------------------------------------------------------------------------------ data.source=synthetic
def random_batch(cfg: Config, device: torch.device | str, generator: torch.Generator | None = None) -> Batch:
    """A pretraining batch of random normalised pixels (never zeros), in the layout ``pretrain_collate`` gives."""
    m, B, F = cfg.model, cfg.data.batch_size, cfg.data.num_sampled_frames
    video = (B, 3, m.num_frames, m.img_size, m.img_size)
    g = {"generator": generator, "device": device}
    index = torch.randint(0, m.num_frames, (B, F), **g)
    return {
        "video1": torch.randn(video, **g),
        "video2": torch.randn(video, **g),
        "images": torch.randn(B, F, 3, m.img_size, m.img_size, **g),
        "frame_index1": index,
        "frame_index2": index.clone(),
    }


class SyntheticClips(torch.utils.data.Dataset):
    """``data.source=synthetic``: items that are only their index, ``data.batch_size`` x ``train.steps_per_epoch``
    of them (x ``optim.accum_steps``; 100 batches when it is 0), so the loader costs next to nothing."""

    def __init__(self, cfg: Config):
        self.size = cfg.data.batch_size * (cfg.train.steps_per_epoch or 100) * cfg.optim.accum_steps

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index

    @staticmethod
    def collate(items: list[int]) -> Batch:
        return {"index": torch.tensor(items)}


class SyntheticBatches:
    """Replaces every batch of :class:`SyntheticClips` by one of two random batches made on the device at the first
    call (from their own generator, seeded by ``train.seed``), in turn: what ``bench`` feeds its step."""

    def __init__(self, cfg: Config):
        self.cfg, self.batches, self.calls = cfg, [], 0

    def __call__(self, batch: Batch) -> Batch:
        if not self.batches:
            device = batch["index"].device
            g = torch.Generator(device).manual_seed(self.cfg.train.seed)
            self.batches = [random_batch(self.cfg, device, g) for _ in range(2)]
        self.calls += 1
        return self.batches[self.calls % 2]
