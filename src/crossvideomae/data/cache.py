"""``data.cache=memory``: every frame of every video decoded once, kept as uint8 in the process's memory.

For sets that fit in RAM (a few thousand short clips at a small short side: 2,000 videos x 32 frames at 64x64
are 0.8 GB), decoding leaves the loop after the first pass: each item then slices frames out of memory, and
with ``data.augment=device`` the loader's work per clip is a few index operations. The frames are those the
uncached reader would return for the same ``short_side`` (PyAV scales while decoding), so a cached run draws the
same clips and pixels as an uncached one.

The cache is filled eagerly when a dataset is built (``fill``: a thread pool; PyAV decodes without the GIL)
and lives at module level, so the DataLoader's forked workers share its pages and the train and test datasets
of one process share one copy. A video that fails to decode is remembered with its error and raises it again
on every open, so the datasets' replace-and-log path works as without the cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import torch

from .decode import DecodeError, VideoInfo

_frames: dict[tuple[str, int], torch.Tensor | DecodeError] = {}  # (path, short side) -> (N, H, W, 3) uint8


class CachedReader:
    """The reader interface (``info``, ``frames``, a context manager) over frames already in memory."""

    def __init__(self, path: str, frames: torch.Tensor):
        self.path, self._all = path, frames
        n = len(frames)
        self.info = VideoInfo(n, list(range(n)), Fraction(1, 1), 1.0)

    def frames(self, indices) -> torch.Tensor:
        ids = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(self._all)):
            raise DecodeError(self.path, f"frame index out of range 0..{len(self._all) - 1}")
        return self._all[ids]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _decode_all(open_fn: Callable, path: str, short_side: int) -> torch.Tensor | DecodeError:
    try:
        with open_fn(path, short_side) as reader:
            return reader.frames(range(reader.info.num_frames)).contiguous()
    except DecodeError as err:
        return err


def fill(paths: Iterable[str], short_side: int, open_fn: Callable, threads: int = 0) -> int:
    """Decode every video of ``paths`` not cached yet at ``short_side`` (``open_fn(path, short_side)`` opens the
    uncached reader). Returns the bytes held for these paths."""
    todo = [p for p in dict.fromkeys(paths) if (p, short_side) not in _frames]
    workers = threads or min(16, os.cpu_count() or 1)
    if todo:
        from tqdm import tqdm

        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda p: _decode_all(open_fn, p, short_side), todo)
            for path, frames in tqdm(
                zip(todo, results, strict=True), total=len(todo), desc="caching videos", leave=False
            ):
                _frames[(path, short_side)] = frames
    held = (_frames[(p, short_side)] for p in dict.fromkeys(paths))
    return sum(f.numel() for f in held if isinstance(f, torch.Tensor))


def open_cached(path: str, short_side: int, open_fn: Callable) -> CachedReader:
    """The cached reader of ``path``; decodes it now on a miss (a worker's own copy then)."""
    key = (path, short_side)
    if key not in _frames:
        _frames[key] = _decode_all(open_fn, path, short_side)
    frames = _frames[key]
    if isinstance(frames, DecodeError):
        raise frames
    return CachedReader(path, frames)


def clear() -> None:
    _frames.clear()
