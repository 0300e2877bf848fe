"""Evaluation inputs: the video lists of ``crossvideomae.data`` or an image-folder tree for the image encoder.

``data.train_list`` / ``data.val_list`` may hold ``{split}``, replaced by ``eval.split`` (UCF101 / HMDB51
splits 1-3, e.g. ``data.train_list=data/ucf101/train_split{split}.txt``). With ``eval.encoder=image`` the two
paths are ImageFolder roots (``<root>/<class>/<image>``); items then carry ``image`` (3, H, W) instead of
``video``, in the same dict layout so that every protocol runs unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import Config, ConfigError


def list_path(cfg: Config, split: str) -> str:
    """The train or val list (or image root) with ``{split}`` filled in."""
    raw = cfg.data.train_list if split == "train" else cfg.data.val_list
    if not raw:
        raise ConfigError(f"data.{split}_list is empty: give the {split} list file or folder")
    return raw.replace("{split}", str(cfg.eval.split))


def image_transform(cfg: Config, train: bool, randaugment: str = ""):
    """timm's transform of a PIL image to a normalised (3, H, W) tensor at ``model.img_size``: with ``train``,
    a random resized crop (``data.image_crop_scale``), flip (``data.flip``) and RandAugment ``randaugment``."""
    from timm.data import create_transform

    return create_transform(
        cfg.model.img_size,
        is_training=train,
        scale=tuple(cfg.data.image_crop_scale),
        hflip=0.5 if cfg.data.flip else 0.0,
        auto_augment=randaugment or None,
        interpolation="bicubic",
        re_prob=0.0,  # erasing happens on the batch, as for videos
        mean=tuple(cfg.data.mean),
        std=tuple(cfg.data.std),
        crop_pct=0.875,
    )


class ImageItems(Dataset):
    """torchvision ImageFolder with timm's transforms, as dict items like the video datasets'."""

    def __init__(self, root: str, cfg: Config, train: bool, randaugment: str = ""):
        from torchvision.datasets import ImageFolder

        self.folder = ImageFolder(root, transform=image_transform(cfg, train, randaugment))
        self.classes = list(self.folder.classes)
        self.num_classes = len(self.classes)
        self.samples = self.folder.samples

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> dict:
        image, label = self.folder[index]
        return {"image": image, "label": label, "kind": -1, "index": index}


def eval_dataset(cfg: Config, split: str, train: bool = False, multiview: bool = False) -> Dataset:
    """Evaluation set of ``split`` ("train" | "val"). ``train`` = training augmentation (fine-tuning);
    ``multiview`` = K clips x crops per video (``eval.num_clips`` x ``eval.num_crops``)."""
    path = list_path(cfg, split)
    if cfg.eval.encoder == "image":
        return ImageItems(path, cfg, train, cfg.eval.randaugment if train else "")
    from ..data import build_eval_dataset

    return build_eval_dataset(cfg, path, train=train, multiview=multiview)


def collate_fn(cfg: Config):
    if cfg.eval.encoder == "image":
        return None  # torch's default collate stacks the dict items
    from ..data import eval_collate

    return eval_collate


def class_names(cfg: Config, dataset: Dataset, label: str) -> list[str] | None:
    """Names of the classes of ``label`` ("label" | "kind"): the image folders, or ``label_map.json`` beside the
    train list (its ``classes`` / ``kinds``), else None (the picture then shows numbers)."""
    if label == "label" and getattr(dataset, "classes", None):
        return list(dataset.classes)
    label_map = Path(list_path(cfg, "train")).parent / "label_map.json"
    if not label_map.is_file():
        return None
    names = json.loads(label_map.read_text()).get("classes" if label == "label" else "kinds")
    return list(names) if names else None


def num_label_classes(dataset: Dataset, label: str, labels: torch.Tensor, override: int = 0) -> int:
    """Class count of ``label``: ``eval.num_classes`` when set, else the dataset's, else max + 1."""
    if override:
        return override
    if label == "label" and getattr(dataset, "num_classes", 0):
        return int(dataset.num_classes)
    return int(labels.max()) + 1
