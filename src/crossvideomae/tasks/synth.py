"""``crossvideomae synth``: write the built-in synthetic video dataset (``crossvideomae.data.synth``).

The dataset goes into the run folder itself: ``crossvideomae synth --output-dir data/synth`` writes
``data/synth/train.txt``, ``data/synth/val.txt`` (what the ``tiny`` preset reads), the mp4 files, the kind
sidecars and ``label_map.json`` there, next to the harness's ``config.yaml`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import Config
from ..data.synth import write_synthetic_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=int, default=0, help="encoding processes (0 = one per CPU, at most 8)"
    )


def run(cfg: Config, out_dir: Path, args) -> dict:
    start = time.perf_counter()
    summary = write_synthetic_dataset(out_dir, cfg.synth, workers=getattr(args, "workers", 0))
    summary["seconds"] = round(time.perf_counter() - start, 2)
    print(
        f"synth: {summary['num_train']} train + {summary['num_val']} val videos, {summary['classes']} motion classes, "
        f"{summary['kinds']} object kinds -> {out_dir} ({summary['seconds']} s)"
    )
    return summary
