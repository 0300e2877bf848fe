"""Pretraining augmentation on the training device, batched (``data.augment=device``).

The loader workers then only decode. An item hands over its distinct decoded frames once (uint8, at the size
they were decoded at) and, for each of its r clips, which of them make view 1, view 2 and the image branch (the
dataset's plan: the clip window, the sampled slots, view 2's temporal down-sampling). :func:`collate_frames`
pools the frames of a batch into one padded tensor; :class:`DeviceAugment`, called by the training step on
that batch on the model's device, gives exactly the inputs of the CPU path: ``video1``, ``video2``
(B, 3, T, S, S) float32, ``images`` (B, F, 3, S, S) float32, ``frame_index1`` / ``frame_index2`` (B, F).

Random parameters come from the CPU path's own torchvision v2 transforms (:class:`PretrainTransforms`), one set
per clip, shared by its frames: crop boxes from ``RandomResizedCrop.make_params`` inside each frame's own
(unpadded) size, one flip for both views (the motion keeps its direction), RandAugment and ColorJitter drawn
per view-2 clip and, on a GPU, applied to the batch at once (:meth:`DeviceAugment.colour`, the same pixels
as ``PretrainTransforms.colour`` clip by clip, which a CPU runs), the erasing box from ``RandomErasing.make_params``; each
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
from torch.nn.functional import conv2d
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_grayscale_image, _rgb_to_hsv

from ..config import Config
from .transforms import PretrainTransforms, normalize

Batch = dict[str, Any]
# an op on clips (n, T, 3, S, S) uint8 (None: left as they are), the clips it applies to, two values per clip
Action = tuple[Callable | None, list[int], list[tuple[float, float]]]
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

    ``frames`` (N, 3, H, W) uint8, the items' frames padded to one size (or, when the shards' JPEGs are decoded
    on the device, ``plan["jpegs"]``: the N encoded frames end to end in one 1-D uint8 tensor, which stays on
    the host for nvjpeg, with their byte counts ``plan["jpeg_sizes"]``); ``frame_index1`` / ``frame_index2`` (B·r, F), ``label``,
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
    if jpegs:  # one buffer: a worker hands over (and the loader pins) one tensor per batch, not one per frame
        batch["plan"]["jpegs"] = torch.cat(jpegs)
        batch["plan"]["jpeg_sizes"] = [len(j) for j in jpegs]
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
            if "frames" in batch:
                pool = batch["frames"]
            else:
                pool = self.decode(list(torch.split(plan["jpegs"], plan["jpeg_sizes"])), device)
            out = self.augment(pool, plan)
        rest = {k: v for k, v in batch.items() if k not in ("frames", "plan")}
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
        video2 = self.flip(video2, flips)
        # batched on a GPU, where launches are the cost; clip by clip on a CPU, where the per-clip loop's small
        # working set is faster (docs/DATA.md); the same draws and pixels either way
        video2 = self.colour(video2) if video2.is_cuda else torch.stack([tf.colour(clip) for clip in video2])
        video2 = self.erase(normalize(video2, self.mean, self.std))
        images = self.flip(self.crop(fpool, image_rows, image_box), image_flips)  # (B, F, 3, S, S)
        return {
            "video1": normalize(video1, self.mean, self.std).transpose(1, 2).contiguous(),  # (B, 3, T, S, S)
            "video2": video2.transpose(1, 2).contiguous(),
            "images": normalize(images, self.mean, self.std),
        }

    def colour(self, video: torch.Tensor) -> torch.Tensor:
        """View 2's RandAugment and ColorJitter on a batch (B, T, 3, S, S) uint8, batched.

        The same draws, from the same generator and in the same order, as :meth:`PretrainTransforms.colour`
        called on each clip in turn, and the same pixels; each op then runs once on all the clips that drew
        it, with per-clip parameters (RandAugment step by step, ColorJitter position by position of its
        drawn order). Rotations, shears, translations, equalize and autocontrast run once per distinct
        magnitude, through torchvision's own RandAugment code. All indices and factors reach the device in
        one copy each.
        """
        tf, (B, _, _, H, W) = self.tf, video.shape
        if B == 0 or (tf.randaug is None and tf.jitter is None):
            return video
        drawn, jitter = [], []
        for _ in range(B):  # the per-clip order: a clip's RandAugment draws, then its ColorJitter draws
            drawn.append(tf.randaug.draw(H, W) if tf.randaug is not None else [])
            jitter.append(tf.jitter.make_params([]) if tf.jitter is not None else None)
        # per RandAugment op, then per position of ColorJitter's drawn order: a partition of the clips
        stages: list[list[Action]] = []
        for step in range(len(drawn[0])):
            groups: dict[Any, list[int]] = {}
            for c, ops in enumerate(drawn):
                op, m = ops[step]
                key = None if op == "Identity" else op if op in RANDAUG_PER_CLIP else (op, m)
                groups.setdefault(key, []).append(c)
            stages.append([])
            for key, clips in groups.items():
                if key in RANDAUG_PER_CLIP:
                    kernel, params = RANDAUG_PER_CLIP[key]
                    stages[-1].append((kernel, clips, [params(drawn[c][step][1]) for c in clips]))
                else:
                    stages[-1].append((key and self.randaug_op(*key), clips, [(0.0, 0.0)] * len(clips)))
        for k in range(4 if jitter[0] is not None else 0):
            stages.append([])
            for j, (name, kernel, params) in enumerate(JITTER):
                clips = [c for c, p in enumerate(jitter) if int(p["fn_idx"][k]) == j]
                if clips and jitter[0][name] is not None:  # a factor is None for every clip or for none
                    stages[-1].append((kernel, clips, [params(jitter[c][name]) for c in clips]))
                elif clips:
                    stages[-1].append((None, clips, [(0.0, 0.0)] * len(clips)))
        # every index (each stage's groups, then the permutation that puts its clips back) and every per-clip
        # value, moved to the device at once
        order = [[c for _, clips, _ in stage for c in clips] for stage in stages]
        index = [i for o in order for i in (*o, *np.argsort(o).tolist())]
        index = to_device(torch.tensor(index), video.device)
        values = [v for stage in stages for _, _, vals in stage for v in vals]
        values = to_device(torch.tensor(values, dtype=torch.float32).view(-1, 2, 1, 1, 1, 1), video.device)
        x, i, j = video, 0, 0
        for stage in stages:
            parts = []
            for kernel, clips, _ in stage:
                n = len(clips)
                sub = x if n == B else x.index_select(0, index[i : i + n])
                parts.append(sub if kernel is None else kernel(sub, *values[j : j + n].unbind(1)))
                i, j = i + n, j + n
            x = parts[0] if len(parts) == 1 else torch.cat(parts).index_select(0, index[i : i + B])
            i += B
        return x

    def randaug_op(self, op: str, magnitude: float) -> Callable:
        """One RandAugment op at one magnitude on clips (n, T, 3, H, W), by torchvision's RandAugment."""
        ra = self.tf.randaug.by_magnitude[0]

        def kernel(x: torch.Tensor, *_) -> torch.Tensor:
            return ra._apply_image_or_video_transform(
                x, op, magnitude, interpolation=ra.interpolation, fill=ra._fill
            )

        return kernel

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
        rois = to_device(torch.from_numpy(rois), fpool.device)
        S = self.size
        out = roi_align(fpool, rois, S, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return out.view(B, K, 3, S, S)

    @staticmethod
    def flip(x: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
        """Mirror x (B, K, 3, S, S) where ``flips`` (B,) per clip or (B, K) per image is set."""
        if not flips.any():
            return x
        mask = to_device(torch.from_numpy(flips), x.device).view(*flips.shape, *[1] * (x.dim() - flips.ndim))
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
        i, j, h, w = to_device(torch.from_numpy(boxes), video.device).view(B, 4, 1, 1).unbind(1)
        ys = torch.arange(S, device=video.device).view(1, S, 1)
        xs = ys.view(1, 1, S)
        inside = (ys >= i) & (ys < i + h) & (xs >= j) & (xs < j + w)  # (B, S, S)
        return video.masked_fill(inside[:, None, None], 0.0)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without making the host wait for the device's queued work."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


# Colour ops with one parameter per clip, as torchvision's tensor kernels compute them with one parameter per
# call: x (n, T, 3, H, W) uint8; f, a (n, 1, 1, 1, 1) float32 per clip, the factor and, for the blends, the
# 1 - factor that torchvision computes in double precision. torchvision's blend x·f + y·(1 - f) is
# ``x.mul(f).add_(y, alpha=1 - f)``, one fused multiply-add after the product, which ``addcmul`` is too;
# clamping and the cast to uint8 (truncation) follow it.
def _blend(x: torch.Tensor, y: torch.Tensor, f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(x.mul(f), y, a).clamp_(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return _rgb_to_grayscale_image(x, num_output_channels=1, preserve_dtype=False).floor_()


def brightness(x: torch.Tensor, f: torch.Tensor, _=None) -> torch.Tensor:
    return x.mul(f).clamp_(0, 255).to(torch.uint8)


def saturation(x: torch.Tensor, f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x), f, a)


def contrast(x: torch.Tensor, f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), f, a)  # each frame's own mean


def sharpness(x: torch.Tensor, f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_sharpness``: the inner pixels blended with a rounded 3x3 blur."""
    H, W = x.shape[-2:]
    if H <= 2 or W <= 2:
        return x
    w, c = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[w, w, w], [w, c, w], [w, w, w]], device=x.device).expand(3, 1, 3, 3)
    out = x.to(torch.float32, copy=True)
    blurred = conv2d(out.view(-1, 3, H, W), kernel, groups=3).round_().view(*x.shape[:-2], H - 2, W - 2)
    inner = out[..., 1:-1, 1:-1]
    inner.addcmul_(blurred.sub_(inner), a)
    return out.clamp_(0, 255).to(torch.uint8)


def hue(x: torch.Tensor, f: torch.Tensor, _=None) -> torch.Tensor:
    """torchvision's ``adjust_hue``: the hue channel shifted by each clip's factor in HSV."""
    h, s, v = _rgb_to_hsv(TF.to_dtype(x, torch.float32, scale=True)).unbind(dim=-3)
    h.add_(f[..., 0]).remainder_(1.0)
    return TF.to_dtype(_hsv_to_rgb(torch.stack((h, s, v), dim=-3)), torch.uint8, scale=True)


def solarize(x: torch.Tensor, threshold: torch.Tensor, _=None) -> torch.Tensor:
    return torch.where(x >= threshold, x.bitwise_not(), x)  # compared in float32, as with a Python threshold


def posterize(x: torch.Tensor, mask: torch.Tensor, _=None) -> torch.Tensor:
    return x & mask.to(torch.uint8)


def _bits_mask(bits: int) -> int:
    return 255 if bits >= 8 else ((1 << bits) - 1) << (8 - bits)


# RandAugment ops batched over magnitudes: kernel, and the per-clip values from the signed magnitude, computed
# as torchvision's RandAugment computes its arguments
RANDAUG_PER_CLIP: dict[str, tuple[Callable, Callable[[float], tuple[float, float]]]] = {
    "Brightness": (brightness, lambda m: (1.0 + m, 0.0)),
    "Color": (saturation, lambda m: (1.0 + m, 1.0 - (1.0 + m))),
    "Contrast": (contrast, lambda m: (1.0 + m, 1.0 - (1.0 + m))),
    "Sharpness": (sharpness, lambda m: (1.0 + m, 1.0 - (1.0 + m))),
    "Solarize": (solarize, lambda m: (255 * m, 0.0)),
    "Posterize": (posterize, lambda m: (float(_bits_mask(int(m))), 0.0)),
}
# ColorJitter's ops in the order of its fn_idx: the factor's name in ``make_params``, kernel, per-clip values
JITTER: tuple[tuple[str, Callable, Callable[[float], tuple[float, float]]], ...] = (
    ("brightness_factor", brightness, lambda f: (f, 0.0)),
    ("contrast_factor", contrast, lambda f: (f, 1.0 - f)),
    ("saturation_factor", saturation, lambda f: (f, 1.0 - f)),
    ("hue_factor", hue, lambda f: (f, 0.0)),
)


def pretrain_inputs(cfg: Config) -> Callable[[Batch], Batch]:
    """What the training step calls first on a collated batch on its device: the batch as it is
    (``data.augment=cpu``), or its augmentation on the device (``data.augment=device``)."""
    if cfg.data.augment == "device":
        return DeviceAugment(cfg)
    return lambda batch: batch
