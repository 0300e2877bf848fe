"""Animated clips: original | masked | reconstructed side by side, one animation frame per video frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_animation(panels: list[np.ndarray], path: Path, fps: int = 4, scale: int = 1, gap: int = 2) -> Path:
    """panels: clips (T, H, W, 3) in [0, 1] of equal shape, placed left to right -> looping GIF at ``path``.

    ``scale`` enlarges small clips by pixel repetition so a 64-pixel synthetic clip stays legible.
    """
    T, H, W, _ = panels[0].shape
    strip = np.ones((T, H, len(panels) * (W + gap) - gap, 3))
    for i, clip in enumerate(panels):
        strip[:, :, i * (W + gap) : i * (W + gap) + W] = clip
    strip = (strip.clip(0, 1) * 255).round().astype(np.uint8)
    if scale > 1:
        strip = strip.repeat(scale, axis=1).repeat(scale, axis=2)
    # one palette for every frame (no flicker), no dithering (dither noise defeats GIF's compression)
    palette = Image.fromarray(strip.reshape(-1, *strip.shape[2:])).quantize(
        256, method=Image.Quantize.MEDIANCUT
    )
    images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE) for frame in strip]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path
