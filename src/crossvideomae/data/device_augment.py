"""Pretraining augmentation on the training device, batched (``data.augment=device``).

The loader workers then only decode. An item hands over its distinct decoded frames once (uint8, at the size
they were decoded at) and, for each of its r clips, which of them make view 1, view 2 and the image branch (the
dataset's plan: the clip window, the sampled slots, view 2's temporal down-sampling). :func:`collate_frames`
pools the frames of a batch into one padded tensor; :class:`DeviceAugment`, called by the training step on
that batch on the model's device, gives exactly the inputs of the CPU path: ``video1``, ``video2``
(B, 3, T, S, S) float32, ``images`` (B, F, 3, S, S) float32, ``frame_index1`` / ``frame_index2`` (B, F).

Random parameters come from the CPU path's own torchvision v2 transforms (:class:`PretrainTransforms`), one set
per clip, shared by its frames: crop boxes from ``RandomResizedCrop.make_params`` inside each frame's own
(unpadded) size, one flip for both views (the motion keeps its direction), RandAugment and ColorJitter applied
to each view-2 clip (T, 3, S, S) on the device, the erasing box from ``RandomErasing.make_params``; each
sampled frame gets its own image crop and flip. The crop + resize of every clip and image of the batch is one
``torchvision.ops.roi_align`` per input (bilinear, averaging ceil(box / S)^2 samples per output pixel when it
shrinks; the CPU path's image crop is bicubic). Every draw comes from the CPU generator, seeded per step from
the items' seeds (themselves a function of ``train.seed``, epoch and index) inside a forked RNG state, so a
step's augmentation is reproducible and the training's own random streams are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align

from ..config import Config
from .transforms import PretrainTransforms, normalize

Batch = dict[str, Any]
ROW_KEYS = ("rows1", "rows2", "image_rows")  # per clip: rows of the pool that make view 1, view 2, the images


def pad_frames(groups: list[torch.Tensor]) -> torch.Tensor:
    """Groups of frames (n_i, 3, h_i, w_i) uint8 -> one pool (sum n_i, 3, max h, max w).

    Each frame's last row and column are repeated into its padding, so interpolating at a frame's edge reads
    what it would read at the edge of an unpadded tensor.
    """
    H, W = max(g.shape[-2] for g in groups), max(g.shape[-1] for g in groups)
    if all(g.shape[-2:] == (H, W) for g in groups):
        return torch.cat(groups)
    pool = groups[0].new_empty((sum(len(g) for g in groups), 3, H, W))
    i = 0
    for g in groups:
        n, _, h, w = g.shape
        p = pool[i : i + n]
        p[..., :h, :w] = g
        p[..., :h, w:] = g[..., w - 1 :]
        p[..., h:, :] = p[..., h - 1 : h, :]
        i += n
    return pool


def collate_frames(items: list[dict]) -> Batch:
    """Batch of device-augmentation items (each with r clips; B items give B·r rows).

    ``frames`` (N, 3, H, W) uint8, the items' frames padded to one size (or ``jpegs``, N encoded frames, when
    the shards' JPEGs are decoded on the device); ``frame_index1`` / ``frame_index2`` (B·r, F), ``label``,
    ``kind``, ``index``, ``temporal_fallback`` (B·r,); ``skipped``; ``plan``, host-side numpy: ``rows1`` / ``rows2`` (B·r, T) and
    ``image_rows`` (B·r, F) into the pool, ``sizes`` (N, 2) each frame's (h, w), ``seed`` of the step.
    """
    groups, jpegs, sizes = [], [], []
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ROW_KEYS}
    for it in items:
        offset = len(sizes)
        if "jpegs" in it:
            jpegs += it["jpegs"]
            sizes += [it["size"]] * len(it["jpegs"])
        else:
            groups.append(it["frames"])
            sizes += [tuple(it["frames"].shape[-2:])] * len(it["frames"])
        for img in it["extra"]:
            groups.append(img[None])
            sizes.append(tuple(img.shape[-2:]))
        for k in ROW_KEYS:
            rows[k].append(it[k] + offset)
    seed = np.random.SeedSequence([it["seed"] for it in items]).generate_state(1, np.uint64)[0]
    batch: Batch = {
        "skipped": [s for it in items for s in it["skipped"]],
        "plan": {
            **{k: np.concatenate(v) for k, v in rows.items()},
            "sizes": np.array(sizes, dtype=np.int64).reshape(-1, 2),
            "seed": int(seed >> np.uint64(1)),
        },
    }
    for key in ("frame_index1", "frame_index2", "temporal_fallback", "label", "kind", "index"):
        batch[key] = torch.cat([it[key] for it in items])
    if jpegs:
        batch["jpegs"] = jpegs
    else:
        batch["frames"] = pad_frames(groups)
    return batch


class DeviceAugment:
    """The CPU path's pretraining augmentations on a collated uint8 batch, on the batch's device."""

    def __init__(self, cfg: Config):
        self.tf = PretrainTransforms(cfg.data, cfg.aug, cfg.model.img_size)
        self.size = cfg.model.img_size
        self.mean, self.std = cfg.data.mean, cfg.data.std

    @torch.compiler.disable  # data-dependent Python: stays eager inside a compiled training step
    def __call__(self, batch: Batch) -> Batch:
        plan = batch["plan"]
        device = batch["frame_index1"].device
        with torch.random.fork_rng(devices=[]), torch.autocast(device.type, enabled=False):
            torch.default_generator.manual_seed(plan["seed"])
            pool = batch["frames"] if "frames" in batch else self.decode(batch["jpegs"], device)
            out = self.augment(pool, plan)
        rest = {k: v for k, v in batch.items() if k not in ("frames", "jpegs", "plan")}
        return {**rest, **out}

    @staticmethod
    def decode(jpegs: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """Encoded frames -> pool (N, 3, H, W) uint8 on ``device``, in one batched call (nvjpeg on CUDA)."""
        frames = decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)
        groups, start = [], 0
        for k in range(1, len(frames) + 1):  # runs of equal size (a video's frames) stacked at once
            if k == len(frames) or frames[k].shape != frames[start].shape:
                groups.append(torch.stack(frames[start:k]))
                start = k
        return pad_frames(groups)

    def augment(self, pool: torch.Tensor, plan: dict[str, Any]) -> Batch:
        """pool (N, 3, H, W) uint8 + plan -> the step's inputs (see the module docstring)."""
        tf, sizes = self.tf, plan["sizes"]
        rows1, rows2, image_rows = plan["rows1"], plan["rows2"], plan["image_rows"]
        B = len(rows1)
        flips = np.array([tf.flip() for _ in range(B)])  # one per clip, for both views
        box1 = np.array([self.box(tf.crop, sizes[r[0]]) for r in rows1])
        box2 = np.array([self.box(tf.crop, sizes[r[0]]) for r in rows2])
        image_box = np.array([[self.box(tf.image_crop, sizes[k]) for k in r] for r in image_rows])
        image_flips = np.array([[tf.flip() for _ in r] for r in image_rows])

        fpool = pool.float()  # roi_align interpolates floats
        video1 = self.flip(self.crop(fpool, rows1, box1), flips)  # (B, T, 3, S, S), 0..255
        video2 = self.crop(fpool, rows2, box2).round_().clamp_(0, 255).to(torch.uint8)
        video2 = torch.stack([tf.colour(clip) for clip in self.flip(video2, flips)])  # per clip (T, 3, S, S)
        video2 = self.erase(normalize(video2, self.mean, self.std))
        images = self.flip(self.crop(fpool, image_rows, image_box), image_flips)  # (B, F, 3, S, S)
        return {
            "video1": normalize(video1, self.mean, self.std).transpose(1, 2).contiguous(),  # (B, 3, T, S, S)
            "video2": video2.transpose(1, 2).contiguous(),
            "images": normalize(images, self.mean, self.std),
        }

    @staticmethod
    def box(crop, size) -> tuple[int, int, int, int]:
        """A crop's (x1, y1, x2, y2) inside a frame of ``size`` (h, w), drawn by the torchvision transform."""
        frame = torch.zeros(1, dtype=torch.uint8).expand(
            3, int(size[0]), int(size[1])
        )  # only its size is read
        p = crop.make_params([frame])
        return p["left"], p["top"], p["left"] + p["width"], p["top"] + p["height"]

    def crop(self, fpool: torch.Tensor, rows: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """rows (B, K) into the pool, boxes (B, 4) (one per clip) or (B, K, 4) -> (B, K, 3, S, S)."""
        B, K = rows.shape
        boxes = np.broadcast_to(boxes.reshape(B, -1, 4), (B, K, 4))
        rois = np.concatenate([rows[..., None], boxes], axis=-1).reshape(-1, 5).astype(np.float32)
        rois = torch.from_numpy(rois).to(fpool.device)
        S = self.size
        out = roi_align(fpool, rois, S, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return out.view(B, K, 3, S, S)

    @staticmethod
    def flip(x: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
        """Mirror x (B, K, 3, S, S) where ``flips`` (B,) per clip or (B, K) per image is set."""
        if not flips.any():
            return x
        mask = torch.from_numpy(flips).to(x.device).view(*flips.shape, *[1] * (x.dim() - flips.ndim))
        return torch.where(mask, x.flip(-1), x)

    def erase(self, video: torch.Tensor) -> torch.Tensor:
        """RandomErasing of view 2 (B, T, 3, S, S), normalised: one box per clip on all its frames, value 0."""
        erase = self.tf.erase
        if erase is None:
            return video
        B, S = len(video), self.size
        boxes = np.zeros((B, 4), dtype=np.int64)  # (top, left, height, width); empty = not erased
        frame = torch.zeros(1, dtype=torch.uint8).expand(3, S, S)
        for c in range(B):
            if torch.rand(1) < erase.p:  # as RandomErasing.forward decides
                p = erase.make_params([frame])
                if p["v"] is not None:
                    boxes[c] = p["i"], p["j"], p["h"], p["w"]
        if not boxes[:, 2].any():
            return video
        i, j, h, w = torch.from_numpy(boxes).to(video.device).view(B, 4, 1, 1).unbind(1)
        ys = torch.arange(S, device=video.device).view(1, S, 1)
        xs = ys.view(1, 1, S)
        inside = (ys >= i) & (ys < i + h) & (xs >= j) & (xs < j + w)  # (B, S, S)
        return video.masked_fill(inside[:, None, None], 0.0)


def pretrain_inputs(cfg: Config) -> Callable[[Batch], Batch]:
    """What the training step calls first on a collated batch on its device: the batch as it is
    (``data.augment=cpu``), or its augmentation on the device (``data.augment=device``)."""
    if cfg.data.augment == "device":
        return DeviceAugment(cfg)
    return lambda batch: batch
