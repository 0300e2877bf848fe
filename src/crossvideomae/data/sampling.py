"""Which frames make a clip (T at a stride, and where), kept apart from decoding and pixels so it can be tested.

Frame ids are presentation-order indices into the video; positions are slots 0..T-1 inside a clip. A clip is
T frames at a stride from a start. When the window (T-1)*stride+1 is longer than the video, the ids past the
end are clamped to the last frame (the clip is padded by repeating it), as SpatioTemporalMAE's
``temporal_sampling`` does; VideoMAE's loaders likewise repeat frames of short videos.
"""

from __future__ import annotations

import numpy as np


def span(num_frames: int, stride: int) -> int:
    """Frames covered by a clip window."""
    return (num_frames - 1) * stride + 1


def clip_ids(start: int, num_frames: int, stride: int, video_len: int) -> np.ndarray:
    """(T,) frame ids of the clip starting at ``start``; ids past the end repeat the last frame."""
    return np.minimum(start + np.arange(num_frames) * stride, video_len - 1)


def random_start(video_len: int, num_frames: int, stride: int, rng: np.random.Generator) -> int:
    return int(rng.integers(0, max(video_len - span(num_frames, stride), 0) + 1))


def centre_start(video_len: int, num_frames: int, stride: int) -> int:
    return max(video_len - span(num_frames, stride), 0) // 2


def even_starts(video_len: int, num_frames: int, stride: int, num_clips: int) -> list[int]:
    """Starts of ``num_clips`` evenly spaced clips covering the video (the multi-view test)."""
    last = max(video_len - span(num_frames, stride), 0)
    if num_clips == 1:
        return [last // 2]
    return [round(last * k / (num_clips - 1)) for k in range(num_clips)]


def sampled_positions(num_frames: int, n: int, strategy: str, rng: np.random.Generator) -> np.ndarray:
    """(n,) sorted slots of the frames sampled for the image branch: random (distinct) | first | middle."""
    if strategy == "random":
        return np.sort(rng.choice(num_frames, size=n, replace=False))
    if strategy == "first":
        return np.arange(n)
    if strategy == "middle":
        return np.arange(n) + (num_frames - n) // 2
    raise ValueError(f"unknown frame strategy {strategy!r} (random | first | middle)")


def start_containing(
    frame: int, video_len: int, num_frames: int, stride: int, rng: np.random.Generator
) -> tuple[int, int]:
    """(start, slot) of a random clip whose slot-th frame is exactly ``frame`` (a pre-sampled frame).

    Among the slots that keep the whole window inside the video one is drawn at random; when the video is too
    short for any, the window starts as late as possible (>= 0) and the frame takes the slot it lands on.
    """
    last = max(video_len - span(num_frames, stride), 0)
    slots = [p for p in range(num_frames) if 0 <= frame - p * stride <= last]
    if slots:
        p = int(rng.choice(slots))
        return frame - p * stride, p
    p = min(frame // stride, num_frames - 1)
    return frame - p * stride, p


def downsample_ids(
    ids1: np.ndarray,
    positions: np.ndarray,
    stride: int,
    video_len: int,
    rng: np.random.Generator,
    factor: int = 2,
) -> tuple[np.ndarray, np.ndarray] | None:
    """View 2's temporal down-sampling: T frames at ``factor`` x the stride, through the first sampled frame.

    The new window is drawn at random among those that put the first sampled frame on a slot (so that frame is
    in view 2 exactly), keep every sampled frame inside the window and stay inside the video. Returns view 2's
    ids (T,) and the new slots (n,) of the sampled frames: the first one exactly, further ones at the nearest
    slot (at most ``stride`` away when the window holds them; exact when their distance to the first is a
    multiple of factor x stride).

    Returns None when the video is too short for a window at ``factor`` x the stride: the caller keeps view 1's
    frames for view 2 (no down-sampling) rather than repeating the last frame, which would freeze part of the
    clip (32 frames at stride 4 would give ``[0, 4, ..., 28, 31, 31, ..., 31]``).
    """
    T, stride2 = len(ids1), stride * factor
    if span(T, stride2) > video_len:
        return None
    sampled = [int(ids1[p]) for p in positions]
    anchor = sampled[0]
    last = video_len - span(T, stride2)
    slots = [
        p
        for p in range(T)
        if 0 <= anchor - p * stride2 <= min(last, min(sampled))
        and anchor - p * stride2 + (T - 1) * stride2 >= max(sampled)
    ]
    if slots:
        start = anchor - int(rng.choice(slots)) * stride2
    else:  # no window inside the video has the first sampled frame on a slot: it takes the nearest slot
        grid = np.arange(last + 1)[:, None] + np.arange(T)[None, :] * stride2  # (starts, T)
        miss = np.abs(grid - anchor).min(axis=1)
        start = int(rng.choice(np.flatnonzero(miss == miss.min())))
    ids2 = clip_ids(start, T, stride2, video_len)
    pos2 = np.array([int(np.abs(ids2 - f).argmin()) for f in sampled])
    return ids2, pos2
