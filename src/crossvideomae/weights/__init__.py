"""Weights that are not a run checkpoint: reading the layouts of MAE, VideoMAE, SpatioTemporalMAE, Hugging Face
and timm (:mod:`.formats`, :mod:`.read`), loading them into a module with a report (:mod:`.load`) and exporting
(:mod:`.export`). Run checkpoints (resume, rotation) are :mod:`crossvideomae.engine.checkpoint`'s.
"""

from .export import export_hf_videomae, hf_videomae_config, save_weights
from .formats import FORMATS
from .load import LoadReport, load_pretrained
from .read import model_config_from_checkpoint, read_source

__all__ = [
    "FORMATS",
    "LoadReport",
    "export_hf_videomae",
    "hf_videomae_config",
    "load_pretrained",
    "model_config_from_checkpoint",
    "read_source",
    "save_weights",
]
