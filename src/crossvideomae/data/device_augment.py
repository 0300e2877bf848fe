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
as ``PretrainTransforms.colour`` clip by clip; a CPU runs the same kernels clip by clip), the erasing box from ``RandomErasing.make_params``; each
sampled frame gets its own image crop and flip. The crop + resize of every clip and image of the batch is one
``torchvision.ops.roi_align`` per input (bilinear, averaging ceil(box / S)^2 samples per output pixel when it
shrinks; the CPU path's image crop is bicubic). Every draw comes from the CPU generator, seeded per step from
the items' seeds (themselves a function of ``train.seed``, epoch and index) inside a forked RNG state, so a
step's augmentation is reproducible and the training's own random streams are untouched. The draws are the
host's share of the work (about 20 ms for 128 clips at the ViT-B augmentation): :meth:`DeviceAugment.collate`
makes them in the loader's workers, beside the decoding, and the training process only copies the pool and
launches the kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn.functional import grid_sample
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2._utils import _get_fill

from ..config import Config
from .colour_ops import FUSED, JITTER, RANDAUG_PER_CLIP, VALUES, affine_matrix, compiled
from .transforms import PretrainTransforms, normalize_constants, to_device

Batch = dict[str, Any]
# one colour op of one clip: a key naming the op (None: none) and its per-clip values (at most VALUES)
ColourOp = tuple[Any, tuple[float, ...]]
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
    """The CPU path's pretraining augmentations on a collated uint8 batch, on the batch's device.

    Two halves: :meth:`draw`, every random parameter of a step (host-side numbers only, from the plan's seed),
    and :meth:`augment`, the pixels on the batch's device. The loader's workers draw (:meth:`collate` is the
    DataLoader's collate), so the training process only copies and launches; a batch collated without the
    parameters gets them drawn on the call, the same numbers either way.
    """

    def __init__(self, cfg: Config):
        self.tf = PretrainTransforms(cfg.data, cfg.aug, cfg.model.img_size)
        self.size = cfg.model.img_size
        self.mean, self.std = cfg.data.mean, cfg.data.std
        self._grids: dict[Any, torch.Tensor] = {}  # affine's base grid per (H, W, device)
        # on a GPU, the per-pixel colour ops and the element-wise ends compiled (colour_ops.compiled)
        self.compile = cfg.data.augment_compile
        ra = self.tf.randaug.by_magnitude[0] if self.tf.randaug is not None else None
        # the batched warp is RandAugment's with its defaults: nearest neighbour, no fill colour
        self.warp = (
            ra is not None
            and ra.interpolation == InterpolationMode.NEAREST
            and _get_fill(ra._fill, torch.Tensor) is None
        )

    def collate(self, items: list[dict]) -> Batch:
        """:func:`collate_frames`, and the step's random parameters drawn here (in the loader's worker) into
        ``plan["params"]``."""
        batch = collate_frames(items)
        batch["plan"]["params"] = self.draw(batch["plan"])
        return batch

    @torch.compiler.disable  # data-dependent Python: stays eager inside a compiled training step
    def __call__(self, batch: Batch) -> Batch:
        plan = batch["plan"]
        params = plan["params"] if "params" in plan else self.draw(plan)
        device = batch["frame_index1"].device
        with torch.autocast(device.type, enabled=False):
            if "frames" in batch:
                pool = batch["frames"]
            else:
                pool = self.decode(list(torch.split(plan["jpegs"], plan["jpeg_sizes"])), device)
            out = self.augment(pool, plan, params)
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

    def draw(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Every random parameter of the step, from the CPU generator seeded with the plan's seed inside a
        forked RNG state (the caller's streams do not move), in this order: the clips' flips (one for both
        views), view 1's and view 2's crop boxes, each sampled frame's crop box and flip, view 2's colour ops
        (:meth:`draw_colour`), the erasing boxes. Numbers only: ``flips`` (B,), ``box1`` / ``box2`` (B, 4),
        ``image_box`` (B, F, 4), ``image_flips`` (B, F), ``colour`` (per clip, its ops), ``erase`` (B, 4) or
        None."""
        tf, sizes = self.tf, plan["sizes"]
        rows1, rows2, image_rows = plan["rows1"], plan["rows2"], plan["image_rows"]
        B = len(rows1)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(plan["seed"])
            return {
                "flips": np.array([tf.flip() for _ in range(B)]),
                "box1": np.array([self.box(tf.crop, sizes[r[0]]) for r in rows1]),
                "box2": np.array([self.box(tf.crop, sizes[r[0]]) for r in rows2]),
                "image_box": np.array([[self.box(tf.image_crop, sizes[k]) for k in r] for r in image_rows]),
                "image_flips": np.array([[tf.flip() for _ in r] for r in image_rows]),
                "colour": self.draw_colour(B),
                "erase": self.draw_erase(B),
            }

    def augment(self, pool: torch.Tensor, plan: dict[str, Any], params: dict[str, Any]) -> Batch:
        """pool (N, 3, H, W) uint8 + plan + the step's parameters -> the step's inputs (module docstring)."""
        rows1, rows2, image_rows = plan["rows1"], plan["rows2"], plan["image_rows"]
        fused = self.compile and pool.is_cuda
        to_uint8, finish = (compiled(_to_uint8), compiled(_finish)) if fused else (_to_uint8, _finish)
        scale, shift = normalize_constants(self.mean, self.std, pool.device)
        flips = self.flip_mask(params["flips"], pool.device)
        fpool = pool.float()  # roi_align interpolates floats
        # view 1 (B, T, 3, S, S), 0..255 -> flipped, normalised, (B, 3, T, S, S)
        video1 = finish(self.crop(fpool, rows1, params["box1"]), scale, shift, flips, None, True)
        video2 = to_uint8(self.crop(fpool, rows2, params["box2"]), flips)
        # batched on a GPU, where launches are the cost; clip by clip on a CPU, where the per-clip loop's small
        # working set is faster (docs/DATA.md); the same pixels either way
        ops = params["colour"]
        if video2.is_cuda:
            video2 = self.colour(video2, ops)
        else:
            video2 = torch.cat([self.colour(clip[None], [o]) for clip, o in zip(video2, ops, strict=True)])
        video2 = finish(video2, scale, shift, None, self.erase_mask(params["erase"], pool.device), True)
        images = self.crop(fpool, image_rows, params["image_box"])  # (B, F, 3, S, S)
        images = finish(images, scale, shift, self.flip_mask(params["image_flips"], pool.device), None, False)
        return {"video1": video1, "video2": video2, "images": images}

    def draw_colour(self, clips: int, size: tuple[int, int] | None = None) -> list[list[ColourOp]]:
        """View 2's RandAugment and ColorJitter draws for ``clips`` clips: the same draws, from the same
        generator and in the same order, as :meth:`PretrainTransforms.colour` called on each clip in turn (a
        clip's RandAugment ops, then its ColorJitter order and factors). Per clip, one (key, values) per step:
        RandAugment's ops, then ColorJitter's four positions; key None leaves the clip as it is. The shears,
        translations and rotations share one key, "affine", whose values are the clip's inverse affine matrix
        as torchvision computes it, so that they run as one warp of every clip that drew one. ``size``: the
        clips' (H, W), by default the crop size."""
        tf, (H, W) = self.tf, size or (self.size, self.size)
        out: list[list[ColourOp]] = []
        for _ in range(clips):
            ops: list[ColourOp] = []
            for op, m in tf.randaug.draw(H, W) if tf.randaug is not None else []:
                if op == "Identity":
                    ops.append((None, ()))
                elif op in RANDAUG_PER_CLIP:
                    ops.append((op, RANDAUG_PER_CLIP[op][1](m)))
                elif self.warp and (matrix := affine_matrix(op, m, H, W)) is not None:  # one warp per step
                    ops.append(("affine", matrix) if matrix else (None, ()))
                else:  # the histogram ops, and rotations by quarter turns: torchvision, per distinct magnitude
                    ops.append((("randaug", op, m), ()))
            if tf.jitter is not None:
                p = tf.jitter.make_params([])
                for k in range(4):
                    j = int(p["fn_idx"][k])
                    name, _, values = JITTER[j]
                    ops.append((("jitter", j), values(p[name])) if p[name] is not None else (None, ()))
            out.append(ops)
        return out

    def colour(self, video: torch.Tensor, ops: list[list[ColourOp]] | None = None) -> torch.Tensor:
        """View 2's RandAugment and ColorJitter on a batch (B, T, 3, S, S) uint8, batched; ``ops`` from
        :meth:`draw_colour` (None: drawn here, from the current generator).

        The same pixels as :meth:`PretrainTransforms.colour` on each clip with the same draws: each op runs
        once on all the clips that drew it, with per-clip parameters (RandAugment step by step, ColorJitter
        position by position of its drawn order; with ``data.augment_compile`` on a GPU, the per-pixel ops as
        compiled kernels, within one grey level). Rotations, shears and translations run as one warp
        (:meth:`affine`), equalize and autocontrast once each through torchvision's RandAugment code. All
        indices, factors and matrices reach the device in one pinned copy each.
        """
        B, fused = len(video), self.compile and video.is_cuda
        ops = self.draw_colour(B, tuple(video.shape[-2:])) if ops is None else ops
        if B == 0 or not ops[0]:
            return video
        # per step, a partition of the clips by key; every index (each group's clips, then the permutation that
        # puts the step's clips back) and every per-clip value, moved to the device at once
        stages, index, values = [], [], []
        for step in range(len(ops[0])):
            groups: dict[Any, list[int]] = {}
            for c, clip_ops in enumerate(ops):
                groups.setdefault(clip_ops[step][0], []).append(c)
            order = [c for clips in groups.values() for c in clips]
            stages.append([(self.kernel(key, fused), len(clips)) for key, clips in groups.items()])
            index += [*order, *np.argsort(order).tolist()]
            values += [[*ops[c][step][1], *[0.0] * (VALUES - len(ops[c][step][1]))] for c in order]
        index_t = to_device(torch.tensor(index), video.device)
        values_t = torch.tensor(values, dtype=torch.float32).view(-1, VALUES, 1, 1, 1, 1)
        values_t = to_device(values_t, video.device)
        x, i, j = video, 0, 0
        for stage in stages:
            parts = []
            for kernel, n in stage:
                sub = x if n == B else x.index_select(0, index_t[i : i + n])
                parts.append(sub if kernel is None else kernel(sub, *values_t[j : j + n].unbind(1)))
                i, j = i + n, j + n
            x = parts[0] if len(parts) == 1 else torch.cat(parts).index_select(0, index_t[i : i + B])
            i += B
        return x

    def kernel(self, key: Any, fused: bool = False) -> Callable | None:
        """The op of a :meth:`draw_colour` key on clips (n, T, 3, S, S), called with VALUES per-clip value
        tensors (n, 1, 1, 1, 1); with ``fused``, a per-pixel colour op (``colour_ops.FUSED``) as one compiled
        kernel."""
        if key is None:
            return None
        if key == "affine":
            return self.affine
        if isinstance(key, str) or key[0] == "jitter":
            kernel = RANDAUG_PER_CLIP[key][0] if isinstance(key, str) else JITTER[key[1]][1]
            return compiled(kernel) if fused and kernel in FUSED else kernel
        return self.randaug_op(key[1], key[2])

    def affine(self, x: torch.Tensor, *theta: torch.Tensor) -> torch.Tensor:
        """Clips (n, T, 3, H, W) uint8 warped by each clip's inverse affine matrix (six (n, 1, 1, 1, 1) values):
        torchvision's ``affine_image`` / ``rotate_image`` (its ``_affine_grid`` and nearest ``grid_sample`` with
        zero fill, RandAugment's settings) for all the clips at once, the matrices arriving by one pinned copy
        instead of a blocking one per call. Frames of a clip share its grid (as channels of one sample)."""
        n, T, C, H, W = x.shape
        th = torch.cat(theta, dim=1).view(n, 2, 3)
        key = (H, W, x.device)
        if key not in self._grids:  # torchvision's base grid: pixel centres, and a column of ones
            base = torch.empty(1, H, W, 3, device=x.device)
            base[..., 0].copy_(torch.linspace((1.0 - W) * 0.5, (W - 1.0) * 0.5, steps=W, device=x.device))
            base[..., 1].copy_(
                torch.linspace((1.0 - H) * 0.5, (H - 1.0) * 0.5, steps=H, device=x.device)[:, None]
            )
            base[..., 2].fill_(1)
            self._grids[key] = base.view(1, H * W, 3)
        scaled = torch.stack([th[:, 0] / (0.5 * W), th[:, 1] / (0.5 * H)], dim=-1)  # theta^T / (w/2, h/2)
        # one bmm per clip, torchvision's own product (a batched one may round differently)
        grid = torch.cat([self._grids[key].bmm(scaled[k : k + 1]) for k in range(n)]).view(n, H, W, 2)
        out = grid_sample(x.reshape(n, T * C, H, W).float(), grid, mode="nearest", align_corners=False)
        return out.round_().to(torch.uint8).view(n, T, C, H, W)

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
    def flip_mask(flips: np.ndarray, device: torch.device) -> torch.Tensor | None:
        """``flips`` (B,) per clip or (B, K) per image -> a bool mask to broadcast over (B, K, 3, S, S) on
        ``device``; None when nothing is flipped."""
        if not flips.any():
            return None
        mask = to_device(torch.from_numpy(flips), device)
        return mask.view(*flips.shape, *[1] * (5 - flips.ndim))

    def draw_erase(self, clips: int) -> np.ndarray | None:
        """RandomErasing's boxes for view 2 (top, left, height, width) per clip, as ``RandomErasing.forward``
        decides (an empty box: not erased); None when erasing is off."""
        erase = self.tf.erase
        if erase is None:
            return None
        S = self.size
        boxes = np.zeros((clips, 4), dtype=np.int64)
        frame = torch.zeros(1, dtype=torch.uint8).expand(3, S, S)  # only its size is read
        for c in range(clips):
            if torch.rand(1) < erase.p:
                p = erase.make_params([frame])
                if p["v"] is not None:
                    boxes[c] = p["i"], p["j"], p["h"], p["w"]
        return boxes

    def erase_mask(self, boxes: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
        """View 2's erasing boxes -> (B, 1, 1, S, S) bool on ``device``, set inside each clip's box (all its
        frames); None when nothing is erased."""
        if boxes is None or not boxes[:, 2].any():
            return None
        B, S = len(boxes), self.size
        i, j, h, w = to_device(torch.from_numpy(boxes), device).view(B, 4, 1, 1).unbind(1)
        ys = torch.arange(S, device=device).view(1, S, 1)
        xs = ys.view(1, 1, S)
        inside = (ys >= i) & (ys < i + h) & (xs >= j) & (xs < j + w)  # (B, S, S)
        return inside[:, None, None]


# The element-wise ends of :meth:`DeviceAugment.augment`, eager or (``data.augment_compile`` on a GPU) compiled
# into one kernel each: x (B, K, 3, S, S); flips and erased from DeviceAugment.flip_mask / erase_mask or None.
def _to_uint8(x: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
    """Interpolated floats -> uint8, rounded, mirrored where ``flips`` is set."""
    x = x.round().clamp_(0, 255).to(torch.uint8)
    return x if flips is None else torch.where(flips, x.flip(-1), x)


def _finish(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    flips: torch.Tensor | None,
    erased: torch.Tensor | None,
    channels_first: bool,
) -> torch.Tensor:
    """0..255 -> mirrored where ``flips`` is set, normalised (x · scale + shift), 0 where ``erased`` is set, and
    with ``channels_first`` as (B, 3, K, S, S), contiguous."""
    if flips is not None:
        x = torch.where(flips, x.flip(-1), x)
    x = torch.addcmul(shift, x.float(), scale)
    if erased is not None:
        x = x.masked_fill(erased, 0.0)
    return x.transpose(1, 2).contiguous() if channels_first else x


def loader_collate(
    inputs: Callable[[Batch], Batch], collate: Callable[[list[dict]], Batch]
) -> Callable[[list[dict]], Batch]:
    """The pretraining DataLoader's collate for the step's ``inputs``: with device augmentation
    :meth:`DeviceAugment.collate` (the step's random parameters drawn in the workers), else ``collate``."""
    return inputs.collate if isinstance(inputs, DeviceAugment) else collate


def pretrain_inputs(cfg: Config) -> Callable[[Batch], Batch]:
    """What the training step calls first on a collated batch on its device: the batch as it is
    (``data.augment=cpu``), or its augmentation on the device (``data.augment=device``)."""
    if cfg.data.augment == "device":
        return DeviceAugment(cfg)
    return lambda batch: batch
