"""Datasets: pretraining samples (two views + sampled frames) and evaluation clips, plus their collates.

Randomness. Each item draws its clip, views and augmentations from a seed. After ``set_epoch(epoch)`` the seed
is a function of (``train.seed``, epoch, index) only, so a run gives the same batches whatever the worker
count and a resumed run repeats the uninterrupted one; call it before building each epoch's iterator (like
``DistributedSampler.set_epoch``; not with persistent workers, which keep their own copy). Without it the
seed comes from torch's RNG of the process (seeded per worker by the DataLoader), so epochs still differ.

Robustness. A video that fails to decode (:class:`DecodeError`) is replaced by another randomly drawn one
(up to ``MAX_TRIES``); the failures travel with the item in ``skipped`` (``(path, reason)`` pairs) for
:class:`~crossvideomae.data.badvideos.BadVideoLog`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import Config, ConfigError
from . import cache
from .decode import DecodeError, open_video
from .device_augment import collate_frames
from .lists import FrameRecord, VideoRecord, list_images, num_classes, read_frame_index, read_list
from .sampling import (
    centre_start,
    clip_ids,
    downsample_ids,
    even_starts,
    random_start,
    sampled_positions,
    start_containing,
)
from .shards import FrameShards
from .transforms import EvalTransforms, PretrainTransforms, resize_short_side

MAX_TRIES = 10  # videos tried per item before giving up


def _load_image(path: str) -> torch.Tensor:
    """(3, H, W) uint8."""
    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    except OSError as err:
        raise DecodeError(path, f"cannot read image: {err}") from None


class _RobustVideoDataset(Dataset):
    """Seeding and the replace-on-failure loop shared by the pretraining and evaluation datasets."""

    records: list[VideoRecord]

    def __init__(self, cfg: Config, list_path: str):
        self.cfg, self.list_path = cfg, list_path
        self.epoch: int | None = None

    @property
    def samples(self) -> list[tuple[str, int]]:
        return [(r.path, r.label) for r in self.records]

    @property
    def num_classes(self) -> int:
        return (
            num_classes(self.list_path, self.records)
            if self.list_path
            else max(r.label for r in self.records) + 1
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _seed(self, index: int) -> int:
        if self.epoch is None:
            return int(torch.randint(2**62, ()))
        return int(
            np.random.SeedSequence([self.cfg.train.seed, self.epoch, index]).generate_state(2, np.uint64)[0]
            >> 2
        )

    def _open(self, path: str, short_side: int):
        if self.cfg.data.cache == "memory":
            return cache.open_cached(path, short_side, self._open_file)
        return self._open_file(path, short_side)

    def _open_file(self, path: str, short_side: int):
        d = self.cfg.data
        return open_video(path, d.backend, threads=d.decode_threads, short_side=short_side)

    def _fill_cache(self, short_side: int) -> None:
        """With ``data.cache=memory``: decode every video now, before workers fork (they share the pages)."""
        if self.cfg.data.cache == "memory":
            held = cache.fill([r.path for r in self.records], short_side, self._open_file)
            print(
                f"data.cache=memory: {len(self.records)} videos of {self.list_path or 'the set'} "
                f"at short side {short_side}: {held / 2**30:.2f} GiB"
            )

    def _frames(self, reader, ids: np.ndarray, short_side: int) -> tuple[torch.Tensor, dict[int, int]]:
        """Decode the distinct ids once: (U, 3, H, W) uint8 and id -> row."""
        uniq = np.unique(ids)
        frames = reader.frames(uniq).permute(0, 3, 1, 2)
        if self.cfg.data.backend != "pyav":
            frames = resize_short_side(frames, short_side)
        return frames, {int(k): r for r, k in enumerate(uniq)}

    def __getitem__(self, index: int) -> dict:
        seed = self._seed(index)
        skipped: list[str] = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            i = index
            for _ in range(MAX_TRIES):
                try:
                    item = self._item(i, rng)
                    break
                except DecodeError as err:
                    skipped.append((err.path, err.reason))
                    i = int(rng.integers(len(self)))
            else:
                raise RuntimeError(
                    f"{MAX_TRIES} videos in a row failed to decode:\n  "
                    + "\n  ".join(f"{path}: {reason}" for path, reason in skipped)
                )
        item["skipped"] = skipped
        return item

    def _item(self, i: int, rng: np.random.Generator) -> dict:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------- pretraining
class PretrainDataset(_RobustVideoDataset):
    """Items for CrossVideoMAE pretraining (two views of a clip, sampled frames); see :func:`build_pretrain_dataset` for the fields.

    With ``data.presampled`` the items are the videos of a pre-sampled frame index: each item picks one of the
    video's pre-sampled frames, reads it from its image file for the image branch, and places view 1's window
    so that the frame is one of its T frames. Further sampled frames (n > 1) come from the clip.
    With ``data.image_source`` the image branch shows random images of that folder instead of the clip's frames
    (the frame-level video terms still use the sampled frame's slot).
    With ``data.frame_shards`` the videos are those of a frame-shard dataset, their frames stored JPEGs.
    With ``data.augment=device`` items hold uint8 frames and the plan of their clips (:meth:`_uint8_item`).
    """

    def __init__(self, cfg: Config, split: str = "train"):
        d = cfg.data
        list_path = d.train_list if split == "train" else d.val_list
        super().__init__(cfg, "" if d.presampled else list_path)
        self.presampled: list[list[FrameRecord]] = []
        self.shards = FrameShards(d.frame_shards) if d.frame_shards else None
        if self.shards is not None:
            self.records = self.shards.records
        elif d.presampled:
            by_video: dict[str, list[FrameRecord]] = defaultdict(list)
            for row in read_frame_index(d.presampled):
                by_video[row.video].append(row)
            self.records = [VideoRecord(v, rows[0].label) for v, rows in by_video.items()]
            self.presampled = list(by_video.values())
        else:
            if not list_path:
                key = f"data.{'train' if split == 'train' else 'val'}_list"
                raise ConfigError(f"config key '{key}': is empty: give a list file or folder")
            self.records = read_list(list_path, d.root)
        self.images = list_images(d.image_source) if d.image_source else []
        self.tf = PretrainTransforms(d, cfg.aug, cfg.model.img_size)
        self._fill_cache(d.short_side)

    def _open_file(self, path: str, short_side: int):
        return self.shards.open(path) if self.shards is not None else super()._open_file(path, short_side)

    def _window(self, i: int, n: int, rng: np.random.Generator) -> tuple[int, int | None, FrameRecord | None]:
        """View 1's start; with pre-sampled frames also the frame's slot and record (else None, None)."""
        T, stride = self.cfg.model.num_frames, self.cfg.data.frame_stride
        if not self.presampled:
            return random_start(n, T, stride, rng), None, None
        pre = self.presampled[i][int(rng.integers(len(self.presampled[i])))]
        start, slot = start_containing(min(pre.frame_index, n - 1), n, T, stride, rng)
        return start, slot, pre

    def _plan(self, i: int, n: int, rng: np.random.Generator, window=None):
        """Frame ids and slots of one clip: view 1 ids (T,), sampled slots (F,), view 2 ids (T,) and slots (F,),
        the pre-sampled frame record (or None), and whether view 2's temporal down-sampling fell back to view
        1's frames because the video is too short for it. ``window`` (:meth:`_window`) fixes view 1's frames."""
        d, T = self.cfg.data, self.cfg.model.num_frames
        F, stride = d.num_sampled_frames, d.frame_stride
        start, slot, pre = window or self._window(i, n, rng)
        if slot is not None:
            others = rng.choice([q for q in range(T) if q != slot], size=F - 1, replace=False)
            positions = np.array([slot, *others], dtype=np.int64)  # the pre-sampled frame first
        else:
            positions = sampled_positions(T, F, d.frame_strategy, rng)
        ids1 = clip_ids(start, T, stride, n)
        ids2, pos2, fell_back = ids1, positions, False
        if rng.random() < self.cfg.aug.temporal_downsample:
            down = downsample_ids(ids1, positions, stride, n, rng)
            if down is None:  # too short for twice the stride: view 2 keeps view 1's frames
                fell_back = True
            else:
                ids2, pos2 = down
        return ids1, positions, ids2, pos2, pre, fell_back

    def _image_file(self, path: str) -> torch.Tensor:
        """(3, H, W) uint8 at the decoded frames' short side."""
        return resize_short_side(_load_image(path)[None], self.cfg.data.short_side)[0]

    def _item(self, i: int, rng: np.random.Generator) -> dict:
        rec, d = self.records[i], self.cfg.data
        with self._open(rec.path, d.short_side) as reader:
            if d.augment == "device":
                return self._uint8_item(i, reader, rng)
            plans = [self._plan(i, reader.info.num_frames, rng) for _ in range(d.repeated_sampling)]
            frames, row = self._frames(
                reader, np.concatenate([np.concatenate([p[0], p[2]]) for p in plans]), d.short_side
            )

        out = defaultdict(list)
        for ids1, pos1, ids2, pos2, pre, fell_back in plans:
            flip = self.tf.flip()  # shared by both views: the motion keeps its direction between them
            out["video1"].append(self.tf.view1(frames[[row[int(k)] for k in ids1]], flip))  # (3, T, S, S)
            out["video2"].append(self.tf.view2(frames[[row[int(k)] for k in ids2]], flip))
            if self.images:
                imgs = [
                    self._image_file(self.images[k]) for k in rng.integers(len(self.images), size=len(pos1))
                ]
            else:
                imgs = list(frames[[row[int(ids1[p])] for p in pos1]])  # F x (3, H, W)
                if pre is not None:
                    imgs[0] = self._image_file(pre.image)
            out["images"].append(self.tf.image(imgs))  # (F, 3, S, S)
            out["frame_index1"].append(torch.as_tensor(pos1, dtype=torch.long))
            out["frame_index2"].append(torch.as_tensor(pos2, dtype=torch.long))
            out["temporal_fallback"].append(torch.tensor(fell_back))
        item = {k: torch.stack(v) for k, v in out.items()}  # leading r dim
        r = d.repeated_sampling
        item["label"] = torch.full((r,), rec.label, dtype=torch.long)
        item["kind"] = torch.full((r,), rec.kind, dtype=torch.long)
        item["index"] = torch.full((r,), i, dtype=torch.long)
        if r == 1:
            item = {k: v[0] for k, v in item.items()}
        return item

    def _uint8_item(self, i: int, reader, rng: np.random.Generator) -> dict:
        """An item for :class:`~crossvideomae.data.device_augment.DeviceAugment`: the distinct frames its r
        clips need, decoded once (``frames`` (U, 3, H, W) uint8 at the decoded size; or ``jpegs``, U encoded
        frames, and their ``size``, with ``data.shard_decode=device``), ``extra`` images (pre-sampled or
        ``data.image_source`` ones, (3, h, w) each), and per clip ``rows1`` / ``rows2`` (r, T) and ``image_rows``
        (r, F) into frames + extra, ``frame_index1`` / ``frame_index2`` (r, F), ``label`` / ``kind`` / ``index`` /
        ``temporal_fallback`` (r,); ``seed`` for the step's pixel augmentations.

        The r clips share view 1's window, so repeated sampling decodes no more frames; they differ in the
        sampled frames, in view 2's temporal down-sampling and in every pixel augmentation.
        """
        rec, d, r = self.records[i], self.cfg.data, self.cfg.data.repeated_sampling
        n = reader.info.num_frames
        window = self._window(i, n, rng)
        plans = [self._plan(i, n, rng, window) for _ in range(r)]
        ids = np.unique(np.concatenate([np.concatenate([p[0], p[2]]) for p in plans]))
        row = {int(k): j for j, k in enumerate(ids)}
        extra: list[torch.Tensor] = []

        def add(image: torch.Tensor) -> int:
            extra.append(image)
            return len(ids) + len(extra) - 1

        image_rows = []
        for ids1, pos1, _, _, pre, _ in plans:
            if self.images:
                picks = rng.integers(len(self.images), size=len(pos1))
                rows = [add(self._image_file(self.images[k])) for k in picks]
            else:
                rows = [row[int(ids1[p])] for p in pos1]
                if pre is not None:
                    rows[0] = add(self._image_file(pre.image))
            image_rows.append(rows)
        item = {
            "rows1": np.array([[row[int(k)] for k in p[0]] for p in plans]),
            "rows2": np.array([[row[int(k)] for k in p[2]] for p in plans]),
            "image_rows": np.array(image_rows),
            "extra": extra,
            "frame_index1": torch.as_tensor(np.stack([p[1] for p in plans]), dtype=torch.long),
            "frame_index2": torch.as_tensor(np.stack([p[3] for p in plans]), dtype=torch.long),
            "temporal_fallback": torch.tensor([p[5] for p in plans]),
            "label": torch.full((r,), rec.label, dtype=torch.long),
            "kind": torch.full((r,), rec.kind, dtype=torch.long),
            "index": torch.full((r,), i, dtype=torch.long),
            "seed": int(rng.integers(2**62)),
        }
        if d.shard_decode == "device":
            item["jpegs"], item["size"] = reader.jpegs(ids), reader.size
        else:
            item["frames"] = reader.frames(ids).permute(0, 3, 1, 2)  # (U, 3, H, W)
        return item


# --------------------------------------------------------------------------------------------- evaluation
class EvalDataset(_RobustVideoDataset):
    """Labelled clips: train = random clip + view-1 style augmentation; test = centre clip and centre crop, or
    with ``multiview`` the K temporal clips x spatial crops of the multi-view test stacked as (V, 3, T, S, S)."""

    def __init__(self, cfg: Config, list_path: str, train: bool, multiview: bool = False):
        super().__init__(cfg, list_path)
        self.train, self.multiview = train, multiview
        self.records = read_list(list_path, cfg.data.root)
        self.tf = EvalTransforms(cfg.data, cfg.model.img_size, cfg.eval.randaugment if train else "")
        self._fill_cache(cfg.data.short_side if train else cfg.model.img_size)

    def _item(self, i: int, rng: np.random.Generator) -> dict:
        rec, d, e = self.records[i], self.cfg.data, self.cfg.eval
        T, stride = self.cfg.model.num_frames, d.frame_stride
        short = d.short_side if self.train else self.cfg.model.img_size  # test: short side = crop size
        with self._open(rec.path, short) as reader:
            n = reader.info.num_frames
            if self.train:
                starts = [random_start(n, T, stride, rng)]
            elif self.multiview:
                starts = even_starts(n, T, stride, e.num_clips)
            else:
                starts = [centre_start(n, T, stride)]
            clips = [clip_ids(s, T, stride, n) for s in starts]
            frames, row = self._frames(reader, np.concatenate(clips), short)
        clips = [frames[[row[int(k)] for k in ids]] for ids in clips]  # each (T, 3, H, W)
        if self.train:
            video = self.tf.train(clips[0])
        elif self.multiview:
            video = torch.cat([self.tf.test(c, e.num_crops) for c in clips])  # (K * crops, 3, T, S, S)
        else:
            video = self.tf.test(clips[0], 1)[0]
        return {
            "video": video,
            "label": torch.tensor(rec.label, dtype=torch.long),
            "kind": torch.tensor(rec.kind, dtype=torch.long),
            "index": torch.tensor(i, dtype=torch.long),
        }


# --------------------------------------------------------------------------------------------- collate
def _collate(items: list[dict], flatten: bool) -> dict:
    batch: dict = {"skipped": [s for it in items for s in it["skipped"]]}
    for key in items[0]:
        if key == "skipped":
            continue
        x = torch.stack([it[key] for it in items])
        batch[key] = x.flatten(0, 1) if flatten else x
    return batch


def pretrain_collate(items: list[dict]) -> dict:
    """Stack pretraining items; with repeated sampling (a leading r dim) the r clips become r batch rows.
    Items of ``data.augment=device`` are pooled by :func:`~crossvideomae.data.device_augment.collate_frames`."""
    if "rows1" in items[0]:
        return collate_frames(items)
    return _collate(items, flatten=items[0]["video1"].dim() == 5)


def eval_collate(items: list[dict]) -> dict:
    return _collate(items, flatten=False)


def build_pretrain_dataset(cfg: Config, split: str = "train") -> PretrainDataset:
    """Items: ``video1``, ``video2`` (3, T, S, S) float; ``images`` (F, 3, S, S); ``frame_index1`` /
    ``frame_index2`` (F,) slots of the sampled frames in each view; ``label``, ``kind``, ``index`` (long);
    ``temporal_fallback`` (bool: view 2's down-sampling did not fit the video and was skipped);
    ``skipped`` (list of ``(path, reason)``). With ``data.repeated_sampling`` = r > 1 each tensor has a leading
    r dim, which :func:`pretrain_collate` flattens into the batch. With ``data.augment=device`` items hold uint8
    frames instead (:meth:`PretrainDataset._uint8_item`), which the training step augments on its device."""
    return PretrainDataset(cfg, split)


def build_eval_dataset(cfg: Config, list_path: str, train: bool, multiview: bool = False) -> EvalDataset:
    return EvalDataset(cfg, list_path, train, multiview)
