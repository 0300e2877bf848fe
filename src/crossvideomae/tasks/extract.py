"""``crossvideomae extract --input LIST_OR_FOLDER``: encoder features of a set of videos (or images).

Writes ``features.safetensors`` (``features`` (N, D) float32 mean-pooled centre-clip features, ``label`` and
``kind`` (N,)) and ``index.csv`` (row, path, label, kind) in the run folder, rows in input order. The input is
a ``path label`` list file, a class-per-folder tree, or a plain folder of videos (then every label is 0);
it defaults to ``data.val_list``. Videos that fail to decode are left out and listed in results.json.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

from safetensors.torch import save

from ..config import Config
from ..engine.device import resolve_device
from ..engine.distributed import init_distributed, is_main_process
from ..eval.encoders import build_encoder, with_checkpoint_model
from ..eval.features import check_bad_videos, eval_loader, extract_features
from ..eval.inputs import collate_fn, eval_dataset
from ..files import atomic_write


def add_arguments(parser) -> None:
    parser.add_argument(
        "--input",
        default=None,
        help="list file, class-per-folder tree or folder of videos (default: data.val_list)",
    )


def _as_list(path: Path, out_dir: Path) -> Path:
    """A plain folder of videos (no class folders) becomes a ``path 0`` list in the run folder."""
    from ..data.lists import VIDEO_EXTS

    if not path.is_dir() or any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return path
    videos = sorted(p.resolve() for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    if not videos:
        raise SystemExit(f"extract: no videos ({', '.join(VIDEO_EXTS)}) in {path}")
    listed = out_dir / "inputs.txt"
    listed.write_text("".join(f"{v} 0\n" for v in videos))
    return listed


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    device = init_distributed(cfg.dist.backend) or resolve_device(cfg.train.device)
    source_path = Path(args.input or cfg.data.val_list)
    if cfg.eval.encoder == "video":
        source_path = _as_list(source_path, out_dir)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_list=str(source_path)))
    cfg = with_checkpoint_model(cfg)
    encoder, source = build_encoder(cfg)
    dataset = eval_dataset(cfg, "val")
    loader = eval_loader(dataset, cfg.eval.batch_size, cfg.data.num_workers, collate_fn(cfg))
    rows, skipped = extract_features({"features": encoder.to(device)}, loader, device)
    samples = dataset.samples
    paths = [str(getattr(samples[i], "path", samples[i][0])) for i in rows["index"].tolist()]
    results: dict[str, Any] = {
        "encoder": source,
        "input": str(source_path),
        "num_videos": len(paths),
        "dim": int(rows["features"].shape[1]),
        "skipped": check_bad_videos(cfg, "input", skipped, len(dataset)),
    }
    if is_main_process():
        tensors = {
            "features": rows["features"].contiguous(),
            "label": rows["label"].long(),
            "kind": rows["kind"].long(),
        }
        data = save(tensors, metadata={"format": "crossvideomae.features"})  # a full disk: an OSError
        atomic_write(out_dir / "features.safetensors", lambda f: f.write(data))
        with (out_dir / "index.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", "path", "label", "kind"])
            for row, (path, lab, kind) in enumerate(
                zip(paths, rows["label"].tolist(), rows["kind"].tolist(), strict=True)
            ):
                writer.writerow([row, path, lab, kind])
        results["features"], results["index"] = (
            str(out_dir / "features.safetensors"),
            str(out_dir / "index.csv"),
        )
        print(f"extract: {len(paths)} x {results['dim']} features -> {results['features']}")
    return results
