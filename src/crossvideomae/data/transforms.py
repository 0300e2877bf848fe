"""Pretraining and evaluation augmentations (paper supp. Tables 2-3), built from torchvision v2 ops.

A clip is a uint8 tensor (T, 3, H, W). torchvision v2 treats the leading T as a batch dimension and draws one
set of random parameters per call, so every frame of a clip gets the same crop, flip, RandAugment ops,
colour jitter and erasing box: the motion inside the clip is untouched.

- view 1: random resized crop (area ``data.crop_scale``) + flip (the short-side scale already happened at
  decoding, see ``decode.py``);
- view 2: its own random resized crop, the *same* flip as view 1 (so the two views show the motion in the
  same direction), RandAugment, colour jitter, random erasing; temporal down-sampling is a choice of frames
  (``sampling.downsample_ids``); mixup / cutmix mix view 2 across the batch (:func:`mix_video2`, called by the
  training loop on a collated batch because it needs other samples);
- image: bicubic random resized crop (area ``data.image_crop_scale``) + its own flip, per sampled frame.

Flips are off everywhere when ``data.flip`` is false (SSv2-like data: direction is the label).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from timm.data.mixup import cutmix_bbox_and_lam
from torchvision.transforms import InterpolationMode, v2

from ..config import AugConfig, DataConfig


def parse_randaugment(spec: str) -> tuple[int, int, float]:
    """timm's ``rand-m9-n2-mstd0.5`` -> (magnitude 0..10, ops, magnitude std)."""
    if not spec.startswith("rand"):
        raise ValueError(f"RandAugment spec must look like 'rand-m9-n2-mstd0.5', got {spec!r}")
    m = re.search(r"-m(\d+)", spec)
    n = re.search(r"-n(\d+)", spec)
    std = re.search(r"-mstd([\d.]+)", spec)
    return int(m.group(1)) if m else 9, int(n.group(1)) if n else 2, float(std.group(1)) if std else 0.0


class RandAugmentClip:
    """torchvision RandAugment on a clip (T, 3, H, W) uint8 with timm's magnitude scale (0..10) and its
    ``mstd`` (magnitude drawn per clip from N(m, mstd))."""

    def __init__(self, spec: str):
        self.magnitude, self.num_ops, self.std = parse_randaugment(spec)
        # built once per magnitude, not once per clip (~0.2 ms of host time each)
        self.by_magnitude = [
            v2.RandAugment(num_ops=self.num_ops, magnitude=m, num_magnitude_bins=11) for m in range(11)
        ]

    def draw_magnitude(self) -> int:
        """This clip's magnitude: N(m, mstd) rounded into 0..10 when ``mstd`` > 0 (one draw)."""
        if self.std <= 0:
            return self.magnitude
        return int(round(min(max(torch.normal(float(self.magnitude), self.std, ()).item(), 0.0), 10.0)))

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self.by_magnitude[self.draw_magnitude()](clip)

    def draw(self, height: int, width: int) -> list[tuple[str, float]]:
        """The (op, signed magnitude) pairs that ``__call__`` would apply to a clip of this size, drawn from the
        same generator in the same order (the magnitude, then per op torchvision's op index and sign)."""
        ra = self.by_magnitude[self.draw_magnitude()]
        ops = []
        for _ in range(ra.num_ops):
            op, (magnitudes_fn, signed) = ra._get_random_item(ra._AUGMENTATION_SPACE)
            magnitudes = magnitudes_fn(ra.num_magnitude_bins, height, width)
            magnitude = 0.0
            if magnitudes is not None:
                magnitude = float(magnitudes[ra.magnitude])
                if signed and torch.rand(()) <= 0.5:
                    magnitude *= -1
            ops.append((op, magnitude))
        return ops


def normalize(clip: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (or float in 0..255) (..., 3, H, W) -> float32 normalised: (x / 255 - mean) / std as one
    multiply-add, on the clip's device."""
    scale, shift = normalize_constants(mean, std, clip.device)
    return torch.addcmul(shift, clip.float(), scale)


def normalize_constants(mean, std, device: torch.device) -> torch.Tensor:
    """:func:`normalize`'s (scale, shift), (2, 3, 1, 1) float32 on ``device``: x · scale + shift."""
    mean_t, std_t = (torch.tensor(v, dtype=torch.float32) for v in (mean, std))
    return to_device(torch.stack([1.0 / (255.0 * std_t), -(mean_t / std_t)]).view(2, 3, 1, 1), device)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without making the host wait for the device's queued work (a pinned,
    non-blocking copy; a pageable one, or a tensor made on the device from a Python list, waits)."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def to_cthw(clip: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> (3, T, H, W), the layout of the video encoder."""
    return clip.permute(1, 0, 2, 3).contiguous()


class PretrainTransforms:
    """The three inputs of a pretraining sample from decoded frames (uint8, (T, 3, H, W) each)."""

    def __init__(self, data: DataConfig, aug: AugConfig, img_size: int):
        self.data, self.size = data, img_size
        self.crop = v2.RandomResizedCrop(img_size, scale=tuple(data.crop_scale), antialias=True)
        self.image_crop = v2.RandomResizedCrop(
            img_size,
            scale=tuple(data.image_crop_scale),
            interpolation=InterpolationMode.BICUBIC,
            antialias=True,
        )
        self.randaug = RandAugmentClip(aug.randaugment) if aug.randaugment else None
        cj = aug.color_jitter
        self.jitter = v2.ColorJitter(cj, cj, cj, aug.hue) if cj > 0 or aug.hue > 0 else None
        self.erase = v2.RandomErasing(p=aug.random_erasing, value=0) if aug.random_erasing > 0 else None

    def flip(self) -> bool:
        return self.data.flip and bool(torch.rand(()) < 0.5)

    def view1(self, clip: torch.Tensor, flip: bool) -> torch.Tensor:
        """(T, 3, H, W) uint8 -> (3, T, S, S) float."""
        clip = self.crop(clip)
        if flip:
            clip = clip.flip(-1)
        return to_cthw(normalize(clip, self.data.mean, self.data.std))

    def view2(self, clip: torch.Tensor, flip: bool) -> torch.Tensor:
        """(T, 3, H, W) uint8 -> (3, T, S, S) float, strongly augmented."""
        clip = self.crop(clip)
        if flip:
            clip = clip.flip(-1)
        clip = normalize(self.colour(clip), self.data.mean, self.data.std)
        if self.erase is not None:
            clip = self.erase(clip)  # one box on every frame
        return to_cthw(clip)

    def colour(self, clip: torch.Tensor) -> torch.Tensor:
        """View 2's RandAugment and colour jitter: (T, 3, H, W) uint8, on any device, one draw per clip."""
        if self.randaug is not None:
            clip = self.randaug(clip)
        if self.jitter is not None:
            clip = self.jitter(clip)
        return clip

    def image(self, frames) -> torch.Tensor:
        """F frames (3, H, W) uint8 (sizes may differ) -> (F, 3, S, S) float; each gets its own crop and flip."""
        out = []
        for img in frames:
            img = self.image_crop(img)
            if self.flip():
                img = img.flip(-1)
            out.append(img)
        return normalize(torch.stack(out), self.data.mean, self.data.std)


class EvalTransforms:
    """Clips for evaluation: train = view-1 style (random resized crop + flip, + RandAugment for fine-tuning
    when ``randaugment`` is given); test = short side to the crop size, then a centre crop or the 3 spatial
    crops along the long side (the multi-view test's spatial crops)."""

    def __init__(self, data: DataConfig, img_size: int, randaugment: str = ""):
        self.data, self.size = data, img_size
        self.crop = v2.RandomResizedCrop(img_size, scale=tuple(data.crop_scale), antialias=True)
        self.randaug = RandAugmentClip(randaugment) if randaugment else None

    def train(self, clip: torch.Tensor) -> torch.Tensor:
        clip = self.crop(clip)
        if self.data.flip and bool(torch.rand(()) < 0.5):
            clip = clip.flip(-1)
        if self.randaug is not None:
            clip = self.randaug(clip)
        return to_cthw(normalize(clip, self.data.mean, self.data.std))

    def test(self, clip: torch.Tensor, num_crops: int = 1) -> torch.Tensor:
        """(T, 3, H, W) uint8 -> (num_crops, 3, T, S, S): centre crop (1) or left/centre/right (3)."""
        clip = v2.functional.resize(clip, self.size, antialias=True)  # short side -> S
        H, W = clip.shape[-2:]
        S = self.size
        if num_crops == 1:
            offsets = [((H - S) // 2, (W - S) // 2)]
        elif W >= H:
            offsets = [((H - S) // 2, x) for x in (0, (W - S) // 2, W - S)]
        else:
            offsets = [(y, (W - S) // 2) for y in (0, (H - S) // 2, H - S)]
        crops = [clip[..., y : y + S, x : x + S] for y, x in offsets]
        return torch.stack([to_cthw(normalize(c, self.data.mean, self.data.std)) for c in crops])


def mix_video2(video2: torch.Tensor, mixup: float, cutmix: float) -> tuple[torch.Tensor, float]:
    """Mixup / cutmix of view 2 inside the batch (optional): sample i is mixed with sample i-1.

    ``video2`` (B, 3, T, H, W). With both alphas > 0 one of the two is picked with probability 1/2, as timm's
    ``Mixup`` does; cutmix cuts the same box (timm's ``cutmix_bbox_and_lam``, whose centre comes from NumPy's
    global stream, as in fine-tuning's ``Mixup``) out of every frame. Returns the mixed batch and the share λ of
    each sample's own pixels. Pretraining has no labels to mix, so only pixels change; the training loop
    calls this on a collated batch (``aug.mixup`` / ``aug.cutmix``).
    """
    if mixup <= 0 and cutmix <= 0:
        return video2, 1.0
    use_cutmix = cutmix > 0 and (mixup <= 0 or bool(torch.rand(()) < 0.5))
    alpha = cutmix if use_cutmix else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    other = video2.roll(1, dims=0)
    if not use_cutmix:
        return lam * video2 + (1 - lam) * other, lam
    (y0, y1, x0, x1), lam = cutmix_bbox_and_lam(video2.shape, lam)  # lam: the share outside the clipped box
    out = video2.clone()
    out[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
    return out, float(lam)


def merge_backgrounds(video: torch.Tensor, share: float, shift: int = 1) -> torch.Tensor:
    """A clip's moving foreground on another clip's still background (after FAME, Ding et al., CVPR 2022):
    clip i keeps the ``share`` of its pixels that change most over the clip; the rest shows the per-pixel median
    over time of clip i - ``shift`` of the batch.

    ``video`` (B, 3, T, H, W). A pixel's change is the sum over the clip of its absolute frame-to-frame
    difference, over the channels, averaged over a window of about H/8 pixels (so that a moving object makes one
    region and a jittering background's thin edges do not); the mask is per clip, the same on every frame and
    channel. The median keeps the other clip's background and drops its moving object, which would otherwise
    bring a second motion into the clip.
    """
    B, _, T, H, W = video.shape
    if share <= 0 or B < 2 or T < 2:
        return video
    k = 2 * (min(H, W) // 16) + 1
    change = video.float().diff(dim=2).abs().sum(dim=(1, 2))[:, None]  # (B, 1, H, W)
    change = F.avg_pool2d(change, k, stride=1, padding=k // 2, count_include_pad=False)[:, 0]
    threshold = change.flatten(1).quantile(1 - share, dim=1)  # (B,)
    foreground = (change > threshold[:, None, None])[:, None, None]  # (B, 1, 1, H, W); at most `share`
    still = video.roll(shift, dims=0).median(dim=2, keepdim=True).values  # (B, 3, 1, H, W)
    return torch.where(foreground, video, still)


def resize_short_side(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> short side = ``short_side`` (for decoders that do not resize themselves)."""
    if short_side <= 0 or min(frames.shape[-2:]) == short_side:
        return frames
    return v2.functional.resize(frames, short_side, antialias=True)
