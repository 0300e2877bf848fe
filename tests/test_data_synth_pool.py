"""synth.backgrounds and synth.colours: shared pools of backgrounds and object colours."""

import dataclasses

import numpy as np
import pytest

from crossvideomae.config import SynthConfig, load_config
from crossvideomae.data.synth import COLOURS, render_video


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


def test_colour_pool_limits_object_colours():
    def count(frames, colour):  # pixels drawn in exactly this colour (objects are painted flat)
        return int((frames == colour.round().astype(np.uint8)).all(axis=-1).sum())

    for colours, seeds in ((1, range(4)), (0, range(40))):
        cfg = SynthConfig(num_frames=4, size=32, colours=colours)
        used = set()
        for seed in seeds:
            frames = render_video(seed, 0, cfg)[0]  # (T, S, S, 3) uint8, before any encoding
            used |= {k for k in range(len(COLOURS)) if count(frames, COLOURS[k]) > 0}
        assert used == ({0} if colours == 1 else set(range(len(COLOURS)))), (colours, used)
    with pytest.raises(ValueError, match="synth.colours"):
        load_config(None, ["synth.colours=9"])
