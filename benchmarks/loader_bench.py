"""Pretraining loader throughput: decoded + augmented two-view clips per second against the worker count.

Generates H.264 mp4 files at a realistic size (short side 320, 16:9, 10 s at 30 fps, x264 defaults: a key frame
every 250 frames, B-frames; a moving texture so the bit rate is that of real footage), then runs the real
pretraining ``DataLoader`` (``build_pretrain_dataset`` + ``pretrain_collate``) of a preset (default
``vitb_k400``: 16 frames at stride 4, 224x224, short side 256, full view-2 augmentation) for a few seconds per
setting, and profiles one process to show where an item's time goes. With ``data.augment=device`` the loader
only decodes (the augmentation then runs in the training step: ``crossvideomae bench --loader`` times both);
``--generate-only`` writes the files and stops.

    python benchmarks/loader_bench.py --out runs/loader_bench --workers 0 1 2 --repeat 1 2
    python benchmarks/loader_bench.py --preset tiny --list data/synth/train.txt --workers 0 2
    python benchmarks/loader_bench.py --out runs/loader_bench --workers 16 --repeat 1 4 data.augment=device

Writes ``results.json`` into ``--out`` and prints one line per setting.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from crossvideomae.config import load_config
from crossvideomae.data import build_pretrain_dataset, pretrain_collate
from crossvideomae.data.device_augment import loader_collate, pretrain_inputs


# ------------------------------------------------------------------------------------------------ files
def _write_video(job: tuple[str, int, int, int, int, int, int]) -> str:
    path, seed, width, height, frames, fps, gop = job
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    tex = np.kron(tex, np.ones((8, 8, 1), np.uint8))  # blocky texture, (H+16, W+16, 3)
    tex = np.pad(tex, ((0, height), (0, width), (0, 0)), mode="wrap")
    vx, vy = rng.uniform(-3, 3, 2)
    with av.open(path, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
        for t in range(frames):
            x, y = int(abs(vx * t)) % width, int(abs(vy * t)) % height
            img = tex[y : y + height, x : x + width].copy()
            bx = int((0.5 + 0.4 * math.sin(t / 15 + seed)) * (width - 80))
            img[height // 3 : height // 3 + 80, bx : bx + 80] = (255, 80, 40)  # a moving object
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())
    return path


def generate(out: Path, n: int, short_side: int, seconds: float, fps: int, gop: int) -> Path:
    """``n`` files + ``list.txt``; reuses files already there."""
    out.mkdir(parents=True, exist_ok=True)
    height = short_side
    width = int(round(short_side * 16 / 9 / 2)) * 2
    jobs = [(str(out / f"{i:04d}.mp4"), i, width, height, int(seconds * fps), fps, gop) for i in range(n)]
    todo = [j for j in jobs if not Path(j[0]).is_file()]
    if todo:
        with ProcessPoolExecutor(min(os.cpu_count() or 1, 16)) as pool:
            list(pool.map(_write_video, todo))
    (out / "list.txt").write_text("".join(f"{Path(j[0]).name} {j[1] % 10}\n" for j in jobs))
    return out / "list.txt"


# ------------------------------------------------------------------------------------------------ timing
def throughput(cfg, workers: int, seconds: float) -> dict:
    ds = build_pretrain_dataset(cfg)
    loader = DataLoader(
        ds,
        batch_size=cfg.data.batch_size,
        sampler=RandomSampler(ds, replacement=True, num_samples=10**7),  # no epoch ends to drain the pipeline
        num_workers=workers,
        collate_fn=loader_collate(pretrain_inputs(cfg), pretrain_collate),  # the training's own collate
        drop_last=True,
        prefetch_factor=4 if workers else None,
        persistent_workers=workers > 0,
    )
    clips = batches = 0
    it = iter(loader)
    warm = max(1, workers)  # one batch from every worker before the clock runs
    start = None
    while True:
        batch = next(it)
        batches += 1
        if batches == warm:
            start = time.perf_counter()
            continue
        if start is not None:
            clips += len(batch["frame_index1"])  # clips of the batch, in either data.augment mode
            if time.perf_counter() - start >= seconds:
                break
    elapsed = time.perf_counter() - start
    del it
    r = cfg.data.repeated_sampling
    return {
        "workers": workers,
        "repeated_sampling": r,
        "clips_per_s": round(clips / elapsed, 1),
        "videos_per_s": round(clips / r / elapsed, 1),
        "clips": clips,
        "seconds": round(elapsed, 1),
    }


STAGES = {
    "open + demux (index <-> pts table)": "decode.py:__init__",
    "seek + decode + RGB convert": "decode.py:frames",
    "  of which RGB convert/resize (swscale)": "'reformat'",
    "view 1 transform": "transforms.py:view1",
    "view 2 transform (crop, RandAugment, jitter, erasing)": "transforms.py:view2",
    "image transform": "transforms.py:image",
}


def profile(cfg, items: int) -> dict:
    """cProfile of ``items`` items in one process with one thread (as in a loader worker): ms per item and stage."""
    torch.set_num_threads(1)
    ds = build_pretrain_dataset(cfg)
    ds.set_epoch(0)
    ds[0]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(items):
        ds[i % len(ds)]
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    out = {"ms_per_item": round(total / items * 1e3, 1)}
    for label, key in STAGES.items():
        file_part, _, name = key.rpartition(":")  # "file:function", or a C method's quoted name
        ct = sum(
            v[3]
            for (f, _, n), v in stats.items()
            if (file_part and n == name and f.endswith(file_part)) or (not file_part and name in n)
        )
        out[label] = round(ct / items * 1e3, 1)
    return out


def use_variant(variant: str) -> None:
    """Stage ablations, patched in before the workers fork (benchmark only; the package is unchanged).

    full: the real pipeline. uint8: the same augmentations, but views handed over as uint8 and not normalised
    (what moving normalisation to the GPU would save: 4x fewer bytes through shared memory, no float passes).
    decode: decoding + clip sampling only, each view a uint8 centre crop (the ceiling of CPU decoding).
    """
    from crossvideomae.data import transforms

    if variant in ("uint8", "decode"):
        transforms.normalize = lambda clip, mean, std: clip
    if variant == "decode":
        crop = transforms.v2.CenterCrop(224)
        transforms.PretrainTransforms.view1 = lambda self, clip, flip: transforms.to_cthw(crop(clip))
        transforms.PretrainTransforms.view2 = transforms.PretrainTransforms.view1
        transforms.PretrainTransforms.image = lambda self, frames: torch.stack([crop(f) for f in frames])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/loader_bench")
    p.add_argument("--preset", default="vitb_k400")
    p.add_argument("--list", default="", help="use this list instead of generating files")
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--videos-dir", default="", help="where to generate the files (default: OUT/videos)")
    p.add_argument("--short-side", type=int, default=320)
    p.add_argument("--video-seconds", type=float, default=10.0)
    p.add_argument(
        "--gop", type=int, default=250, help="key-frame interval of the generated files (x264 default 250)"
    )
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--repeat", type=int, nargs="+", default=[1, 2], help="data.repeated_sampling values")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per setting")
    p.add_argument("--profile-items", type=int, default=16)
    p.add_argument(
        "--variant", choices=("full", "uint8", "decode"), default="full", help="stage ablation (use_variant)"
    )
    p.add_argument(
        "--generate-only", action="store_true", help="write the video files and their list, then stop"
    )
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lst = args.list or str(
        generate(
            Path(args.videos_dir or out / "videos"),
            args.videos,
            args.short_side,
            args.video_seconds,
            30,
            args.gop,
        )
    )
    gen_s = time.perf_counter() - t0
    print(f"files ready in {gen_s:.1f} s: {lst}", flush=True)
    if args.generate_only:
        return
    results: dict = {
        "preset": args.preset,
        "list": lst,
        "generated_in_s": round(gen_s, 1),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "pyav": av.__version__,
        "ffmpeg": ".".join(map(str, av.library_versions["libavcodec"])),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "overrides": args.overrides,
        "runs": [],
    }
    try:
        import torchcodec  # noqa: F401

        results["torchcodec"] = "installed"
    except ImportError:
        results["torchcodec"] = "not installed: GPU (NVDEC) decoding not measured"
    use_variant(args.variant)
    results["variant"] = args.variant
    base = [f"data.train_list={lst}", *args.overrides]
    results["profile"] = profile(load_config(args.preset, base), args.profile_items)
    print(json.dumps(results["profile"], indent=1), flush=True)
    for r in args.repeat:
        for w in args.workers:
            cfg = load_config(args.preset, [*base, f"data.repeated_sampling={r}"])
            row = throughput(cfg, w, args.seconds)
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
