"""``crossvideomae sample-frames LIST``: extract n frames per video into a pre-sampled frame dataset, or with
``--shards`` every frame into JPEG tar shards.

The run folder receives ``frames/``, ``index.csv`` and ``failed.txt`` (see ``crossvideomae.data.frames``);
pretraining reads it with ``data.presampled=DIR/index.csv``. With ``--shards`` it receives ``shards/``,
``index.csv`` and ``failed.txt`` (see ``crossvideomae.data.shards``), read with ``data.frame_shards=DIR/index.csv``.
Rerunning with the same output folder resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config
from ..data.frames import sample_frames
from ..data.shards import write_frame_shards


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("list", help="list file (`path label`) or class-per-folder tree")
    parser.add_argument("--frames-per-video", "-n", type=int, default=1, help="frames per video (default 1)")
    parser.add_argument(
        "--strategy", choices=("random", "first", "middle"), default=None, help="default: data.frame_strategy"
    )
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU, at most 16)")
    parser.add_argument(
        "--short-side", type=int, default=0, help="resize frames to this short side (0 = as decoded)"
    )
    parser.add_argument("--ext", choices=("jpg", "png"), default="jpg")
    parser.add_argument(
        "--shards",
        action="store_true",
        help="every frame of every video as JPEG into tar shards (-n ignored)",
    )
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of --shards (default 90)")
    parser.add_argument("--videos-per-shard", type=int, default=64, help="with --shards (default 64)")


def run(cfg: Config, out_dir: Path, args) -> dict:
    if args.shards:
        summary = write_frame_shards(
            args.list,
            out_dir,
            short_side=args.short_side,
            quality=args.quality,
            videos_per_shard=args.videos_per_shard,
            workers=args.workers,
            root=cfg.data.root,
        )
        print(
            f"sample-frames --shards: {summary['frames']} frames of {summary['written']} videos "
            f"({len(summary['failed'])} failed), {summary['bytes'] / 2**20:.1f} MiB = "
            f"{summary['gib_per_hour']} GiB per hour of video -> {summary['index']}"
        )
        return summary
    summary = sample_frames(
        args.list,
        out_dir,
        n=args.frames_per_video,
        strategy=args.strategy or cfg.data.frame_strategy,
        seed=cfg.train.seed,
        workers=args.workers,
        root=cfg.data.root,
        short_side=args.short_side,
        ext=args.ext,
    )
    print(
        f"sample-frames: {summary['frames']} frames of {summary['videos']} videos "
        f"({summary['skipped_done']} already done, {len(summary['failed'])} failed) -> {summary['index']}"
    )
    return summary
