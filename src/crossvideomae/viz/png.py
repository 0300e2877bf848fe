"""Writing pictures as PNG files: lossless RGB, or 256-colour palette files for web pages and docs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_png(picture: np.ndarray, path: Path, compact: bool = False) -> Path:
    """picture (H, W, 3) uint8 -> ``path``. ``compact``: an octree palette with error diffusion, about a
    quarter of the bytes; heat maps may show faint dither, so run folders keep the lossless default."""
    image = Image.fromarray(picture)
    if compact:
        image = image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path
