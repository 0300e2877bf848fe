"""synth.backgrounds: a shared pool of backgrounds instead of one per video."""

import dataclasses

import numpy as np

from crossvideomae.config import SynthConfig
from crossvideomae.data.synth import render_video


def _background_estimate(frames: np.ndarray) -> np.ndarray:
    return np.median(frames.astype(np.float32), axis=0)  # the object moves, the background stays


def test_background_pool_shares_backgrounds_across_videos():
    cfg = SynthConfig(num_frames=16, size=32)
    pooled = dataclasses.replace(cfg, backgrounds=1)
    a, b = (render_video(seed, 0, pooled)[0] for seed in (1, 2))
    c, d = (render_video(seed, 0, cfg)[0] for seed in (1, 2))
    same = np.abs(_background_estimate(a) - _background_estimate(b)).max(axis=-1) < 2
    differ = np.abs(_background_estimate(c) - _background_estimate(d)).max(axis=-1) < 2
    assert same.mean() > 0.6 and differ.mean() < 0.2
