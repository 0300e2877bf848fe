"""Pictures: reconstructions and attention maps (paper Fig. 1), clip animations, loss curves.

Everything here draws with matplotlib's object API (``Figure`` + Agg canvas), never ``pyplot``, so it
holds no global state and works in training processes without a display.
"""

from .animation import write_animation
from .attention import image_attention_map, last_block_attention, video_attention_map
from .grid import reconstruction_grid
from .losses import plot_losses, read_metrics
from .reconstruct import Reconstruction, denormalise, predicted_pixels, reconstruct

__all__ = [
    "Reconstruction",
    "denormalise",
    "image_attention_map",
    "last_block_attention",
    "plot_losses",
    "predicted_pixels",
    "read_metrics",
    "reconstruct",
    "reconstruction_grid",
    "video_attention_map",
    "write_animation",
]
