"""``crossvideomae prepare FORMAT ROOT``: official dataset layout -> list files + label map in the run folder.

FORMAT is kinetics | ssv2 | ucf101 | hmdb51 | folder; the layouts are described in
``crossvideomae.data.prepare``. Example: ``crossvideomae prepare ucf101 /data/ucf101 -o data/ucf101`` and
then ``data.train_list=data/ucf101/train_split{split}.txt data.val_list=data/ucf101/val_split{split}.txt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config
from ..data.prepare import FORMATS, prepare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="layout of ROOT")
    parser.add_argument("root", help="dataset folder as distributed (annotations + videos)")
    parser.add_argument(
        "--split", type=int, default=0, help="UCF101/HMDB51 split for train.txt/val.txt (default: eval.split)"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="folder: share held out as val.txt when ROOT has no val/",
    )


def run(cfg: Config, out_dir: Path, args) -> dict:
    summary = prepare(
        args.format, args.root, out_dir, split=args.split or cfg.eval.split, val_fraction=args.val_fraction
    )
    counts = ", ".join(f"{k[4:]} {v}" for k, v in summary.items() if k.startswith("num_"))
    print(
        f"prepare {args.format}: {summary['classes']} classes; {counts}; {summary['missing']} missing -> {out_dir}"
    )
    return summary
