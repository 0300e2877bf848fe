"""``crossvideomae pretrain-image``: MAE pretraining of the image encoder on images (stage 1 of the paper's
pipeline for f_f); the encoder is exported at the end for ``pretrain init.image=``.

``data.train_list`` is a folder: every image under it is used (an ImageFolder tree ``<root>/<class>/<image>``,
or the run folder of ``crossvideomae sample-frames``), labels ignored, with timm's training transform
(``data.image_crop_scale``, ``data.flip``). Masking ``mask.image_ratio``, targets ``loss.norm_pix``; the loop is
the shared one (``engine.train.fit``: checkpoints, ``--resume``, ``metrics.jsonl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..config import Config, ConfigError
from ..data import BadVideoLog
from ..data.datasets import MAX_TRIES, eval_collate
from ..engine.train import Hooks, RunState, fit
from ..eval.inputs import image_transform, list_path
from ..losses import reconstruction_loss
from ..models import ImageMAE
from ..weights import save_weights
from .pretrain import summarise_pretraining

ENCODER_FILE = "image_encoder.safetensors"


class ImageFiles(Dataset):
    """Every image file under ``data.train_list`` (sorted, searched recursively), as ``{"image": (3, H, W)}``
    items with their ``skipped`` files."""

    def __init__(self, cfg: Config, train: bool = True):
        from torchvision.datasets.folder import IMG_EXTENSIONS

        root = Path(list_path(cfg, "train"))
        if not root.is_dir():
            raise ConfigError(
                f"config key 'data.train_list': {root} is not a folder; pretrain-image reads the images under a "
                "folder (an ImageFolder root, or the run folder of `crossvideomae sample-frames`)"
            )
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
        if not self.files:
            raise ConfigError(
                f"config key 'data.train_list': no image files ({', '.join(IMG_EXTENSIONS)}) under {root}"
            )
        self.transform = image_transform(cfg, train)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``image`` (3, S, S) and ``skipped``: an unreadable file is replaced by another drawn at random (up to
        ``MAX_TRIES``) and reported as ``(path, reason)``, which the loop counts as it counts bad videos."""
        from torchvision.datasets.folder import default_loader

        skipped: list[tuple[str, str]] = []
        for _ in range(MAX_TRIES):
            path = str(self.files[index])
            try:
                return {"image": self.transform(default_loader(path)), "skipped": skipped}
            except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
                skipped.append((path, f"cannot read image: {err}"))
                index = int(torch.randint(len(self.files), ()))
        raise RuntimeError(
            f"{MAX_TRIES} images in a row could not be read: " + "; ".join(p for p, _ in skipped)
        )


def image_mae_loss(m: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """MAE's loss of a batch: the squared error on the hidden patches (``rl``, also the ``total``)."""
    out = m(batch["image"])
    rl = reconstruction_loss(out.pred, out.target, out.hidden)
    return {"rl": rl, "total": rl}


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    dataset = ImageFiles(cfg)
    torch.manual_seed(cfg.train.seed)  # initial weights from train.seed, not from whatever ran before
    model = ImageMAE(cfg.model, cfg.mask, cfg.loss.norm_pix)

    def on_end(m: ImageMAE, state: RunState) -> dict[str, Any]:
        encoder = save_weights(m.image_encoder, out_dir / ENCODER_FILE, cfg.model)
        return {"image_encoder": str(encoder), "checkpoint": str(out_dir / "checkpoint-last.pth")}

    model.train()
    results = fit(
        cfg,
        model,
        image_mae_loss,
        dataset,
        eval_collate,
        out_dir,
        resume=args.resume,
        hooks=Hooks(on_end=on_end),
        bad_videos=BadVideoLog(cfg.data.max_bad_fraction, what="image"),  # unreadable images, as bad videos
    )
    results["images"] = len(dataset)
    return summarise_pretraining(results, model, "pretrain-image", "image_encoder")
