"""``crossvideomae convert SOURCE [--to ours|hf] [--kind video|image|model] [--dest PATH]``.

Reads any supported checkpoint (ours, MAE, VideoMAE, SpatioTemporalMAE, Hugging Face, timm; a run folder means its
newest checkpoint), builds the matching module from the file's own model config (or, for files that cannot tell,
from the config given on the command line) and writes it as our safetensors export (+ JSON config beside it) or
as a Hugging Face VideoMAE folder. The load report goes into results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..config import Config
from ..models import build_image_encoder, build_model, build_video_encoder
from ..weights import (
    export_hf_videomae,
    load_pretrained,
    model_config_from_checkpoint,
    save_weights,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="checkpoint file, export, Hugging Face / timm folder or run folder")
    parser.add_argument(
        "--to", choices=("ours", "hf"), default="ours", help="our safetensors export or Hugging Face VideoMAE"
    )
    parser.add_argument(
        "--kind", choices=("video", "image", "model"), default="video", help="which part to convert"
    )
    parser.add_argument(
        "--dest", default=None, help="output .safetensors (ours) or folder (hf); default inside --output-dir"
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="write it even when the source fills only part of the module (the rest stays at random init)",
    )


def run(cfg: Config, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    if args.to == "ours" and args.dest and Path(args.dest).suffix != ".safetensors":
        raise SystemExit(f"crossvideomae convert: --dest {args.dest}: our export is a .safetensors file")
    found = model_config_from_checkpoint(args.source)
    if found is not None:
        cfg = dataclasses.replace(cfg, model=found)
    kind = args.kind
    if args.to == "hf" and kind == "image":
        raise SystemExit(
            "crossvideomae convert: --to hf writes Hugging Face VideoMAE: use --kind video or model"
        )
    module = (
        {"video": build_video_encoder, "image": build_image_encoder}[kind](cfg.model)
        if kind != "model"
        else build_model(cfg)
    )
    report = load_pretrained(module, args.source, kind)
    if not args.allow_partial:
        report.require_complete("--allow-partial")
    if args.to == "ours":
        name = {"video": "video_encoder", "image": "image_encoder", "model": "model"}[kind]
        dest = save_weights(module, Path(args.dest or out_dir / f"{name}.safetensors"), cfg.model)
    else:
        dest = export_hf_videomae(module, cfg.model, Path(args.dest or out_dir / "hf_videomae"))
    return {
        "source": str(args.source),
        "format": report.source,
        "dest": str(dest),
        "loaded": len(report.loaded),
        "missing": report.missing,
        "unexpected": report.unexpected,
        "mismatched": report.mismatched,
        "notes": report.notes,
    }
