"""Video data: decoding, lists and dataset formats, clip sampling, augmentations, datasets, synthetic videos.

Reading order, from the ground up: ``decode`` (frames of a file) -> ``lists`` (which files, which labels) ->
``sampling`` (which frames make a clip) -> ``transforms`` (pixels) -> ``datasets`` (items and collates);
``badvideos`` counts decoding failures; ``synth``, ``prepare`` and ``frames`` write datasets to disk.
"""

from .badvideos import BadVideoLog, TooManyBadVideos
from .datasets import (
    EvalDataset,
    PretrainDataset,
    build_eval_dataset,
    build_pretrain_dataset,
    eval_collate,
    pretrain_collate,
)
from .decode import DecodeError, open_video
from .lists import ListError, read_list
from .transforms import merge_backgrounds, mix_video2

__all__ = [
    "BadVideoLog",
    "DecodeError",
    "EvalDataset",
    "ListError",
    "PretrainDataset",
    "TooManyBadVideos",
    "build_eval_dataset",
    "build_pretrain_dataset",
    "eval_collate",
    "merge_backgrounds",
    "mix_video2",
    "open_video",
    "pretrain_collate",
    "read_list",
]
