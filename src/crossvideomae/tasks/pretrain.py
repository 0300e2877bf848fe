"""``crossvideomae pretrain``: CrossVideoMAE pretraining; the video encoder is exported at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..engine.metrics_log import MetricsLog
from ..engine.train import Hooks, RunState, fit
from ..losses import CrossVideoMAELoss
from ..models import CrossVideoMAE, build_model
from ..weights import save_weights

ENCODER_FILE = "video_encoder.safetensors"


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


def run_pretraining(cfg: Config, out_dir: Path, resume: bool, repeat_batch: int = 1) -> dict[str, Any]:
    """Shared by ``pretrain`` and ``adapt`` (which takes ``repeat_batch`` updates per batch)."""
    from ..data import BadVideoLog, build_pretrain_dataset, mix_video2, pretrain_collate
    from ..data.device_augment import pretrain_inputs

    torch.manual_seed(cfg.train.seed)  # initial weights from train.seed, not from whatever ran before
    model, criterion = build_pretraining(cfg)
    dataset = build_pretrain_dataset(cfg, split="train")
    inputs = pretrain_inputs(cfg)  # the batch as it is, or augmented on the device (data.augment=device)

    def loss_fn(m: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        batch = inputs(batch)
        video2, _ = mix_video2(batch["video2"], cfg.aug.mixup, cfg.aug.cutmix)  # optional, inside the batch
        out = m(batch["video1"], video2, batch["images"], batch["frame_index1"], batch["frame_index2"])
        terms = criterion(out)
        if "temporal_fallback" in batch:  # logged with the loss terms: how often view 2 kept view 1's frames
            terms["temporal_fallback"] = batch["temporal_fallback"].float().mean()
        return terms

    pictures = out_dir / "pictures"

    def on_epoch_end(epoch: int, m: CrossVideoMAE, batch: dict[str, Any], log: MetricsLog) -> None:
        every = cfg.train.viz_every
        last = epoch + 1 == cfg.train.epochs
        if (every and (epoch + 1) % every == 0) or last:
            from ..viz import reconstruction_grid

            m.eval()
            with torch.no_grad():
                image = reconstruction_grid(
                    m, inputs(batch), pictures / f"reconstruction-epoch{epoch + 1:04d}.png"
                )
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
        loss_fn,
        dataset,
        pretrain_collate,
        out_dir,
        resume=resume,
        hooks=Hooks(on_epoch_end=on_epoch_end, on_end=on_end),
        repeat_batch=repeat_batch,
        bad_videos=BadVideoLog(cfg.data.max_bad_fraction),
    )
    results["parameters_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    if results.get("video_encoder"):
        final = results["final_terms"].get("total", float("nan"))
        print(
            f"pretrain: {results['steps']} steps in {results['wall_time_s']:.0f} s, final mean loss {final:.4f}; "
            f"video encoder -> {results['video_encoder']}"
        )
    return results


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    return run_pretraining(cfg, out_dir, resume=args.resume)
