"""The encoder under evaluation: built from the config at random init, or loaded from ``eval.checkpoint``.

A checkpoint that carries its model config (ours do) decides the architecture, so ``eval.checkpoint=PATH``
is enough on the command line; ``model.drop_path`` and ``model.grad_checkpointing`` stay the caller's
(they are training choices, not architecture). Random init uses ``train.seed``, so "pretrained vs random"
comparisons always face the same random network.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..config import Config, ConfigError, from_dict
from ..models import build_image_encoder, build_video_encoder
from .heads import Classifier


def file_sha256(path: str | Path) -> str:
    """sha256 of a file; of a folder (a Hugging Face checkpoint), over its files' relative names and bytes."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 (f is bound in this iteration)
                h.update(chunk)
    return h.hexdigest()


def with_checkpoint_model(cfg: Config) -> Config:
    """``cfg`` with the model section of ``eval.checkpoint`` (when the file carries one)."""
    if not cfg.eval.checkpoint:
        return cfg
    from ..weights import model_config_from_checkpoint

    found = model_config_from_checkpoint(cfg.eval.checkpoint)
    if found is None:
        return cfg
    model = dataclasses.replace(
        found, drop_path=cfg.model.drop_path, grad_checkpointing=cfg.model.grad_checkpointing
    )
    if model != cfg.model:
        print(f"model config taken from {cfg.eval.checkpoint}")
    return dataclasses.replace(cfg, model=model)


def build_encoder(cfg: Config, checkpoint: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The ``eval.encoder`` kind (video | image) from ``checkpoint`` (default ``eval.checkpoint``; "" = random
    init with ``train.seed``) and a record of where it came from for results.json."""
    path = cfg.eval.checkpoint if checkpoint is None else checkpoint
    kind = cfg.eval.encoder
    torch.manual_seed(cfg.train.seed)
    encoder = build_video_encoder(cfg.model) if kind == "video" else build_image_encoder(cfg.model)
    if not path:
        return encoder, {"checkpoint": None, "init": f"random (seed {cfg.train.seed})"}
    from ..engine.checkpoint import CheckpointError
    from ..weights import load_pretrained

    report = load_pretrained(encoder, path, kind=kind)
    if report.missing or report.mismatched:
        raise CheckpointError(
            f"{path}: does not fit the {kind} encoder; evaluating a partly random one would mislead:\n{report}"
        )
    info = {"checkpoint": str(Path(path).resolve()), "sha256": file_sha256(path), "init": "checkpoint"}
    info["load_report"] = {"source": report.source, "tensors": len(report.loaded), "notes": report.notes}
    return encoder, info


def load_classifier(cfg: Config) -> tuple[Classifier, Config, dict[str, Any]]:
    """A fine-tuned classifier from ``eval.checkpoint``: ours (``crossvideomae finetune`` checkpoints, whose
    saved config gives the architecture, the encoder kind and the label) or any supported encoder format
    that also holds ``head.weight`` / ``head.bias`` (VideoMAE and MAE fine-tuned checkpoints)."""
    path = cfg.eval.checkpoint
    if not path:
        raise ConfigError(
            "test needs eval.checkpoint=PATH of a fine-tuned model (e.g. runs/finetune/checkpoint-last.pth)"
        )
    from ..engine.checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path)
    state = ckpt["model"] if isinstance(ckpt.get("model"), dict) else ckpt
    if "config" in ckpt:
        saved = from_dict(ckpt["config"])
        cfg = dataclasses.replace(
            cfg,
            model=dataclasses.replace(saved.model, drop_path=0.0),
            eval=dataclasses.replace(
                cfg.eval, encoder=saved.eval.encoder, label=saved.eval.label, ft_pool=saved.eval.ft_pool
            ),
        )
    else:
        cfg = with_checkpoint_model(cfg)
    if "head.weight" not in state:
        raise CheckpointError(f"{path}: no classification head (head.weight): not a fine-tuned checkpoint")
    num_classes = state["head.weight"].shape[0]
    if any(k.startswith("encoder.") for k in state):  # ours
        encoder, _ = build_encoder(cfg, checkpoint="")
        model = Classifier(encoder, num_classes, pool=cfg.eval.ft_pool)
        model.load_state_dict(state)
    else:
        encoder, _ = build_encoder(cfg)
        model = Classifier(encoder, num_classes)
        model.head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    info = {"checkpoint": str(Path(path).resolve()), "sha256": file_sha256(path), "num_classes": num_classes}
    return model, cfg, info
