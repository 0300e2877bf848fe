"""View 2's RandAugment + ColorJitter of ``data.augment=device``: the per-clip loop (``PretrainTransforms.colour``
on each clip) against the batched ``DeviceAugment.colour`` with eager kernels and, on CUDA, with compiled ones
(``data.augment_compile``), at the default augmentation (rand-m9-n2-mstd0.5, colour jitter 0.4, hue 0): 32 clips
of 16x3x224x224, 64 clips of 16x3x64x64 and, for mostly host time, 32 clips of 16x3x16x16, uint8, on CUDA when
there is one, else on the CPU. Each run starts from the same seed, so
every variant draws the same ops; the eager ones give the same pixels (checked first), the compiled one pixels
within one grey level (its largest difference and the share of pixels that differ are reported).

    python benchmarks/device_augment_bench.py [--runs N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.benchmark import Timer

from crossvideomae.config import load_config
from crossvideomae.data.device_augment import DeviceAugment

SHAPES = ((32, 224), (64, 64), (32, 16))  # (clips, size), 16 frames each; 16x16: mostly host (dispatch) time


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs of each variant (after Timer's two warm-up runs)"
    )
    parser.add_argument("--out", default="", help="also write the results to this JSON file")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": 1,
        "rows": [],
    }  # fmt: skip  (Timer's default)
    for clips, size in SHAPES:
        cfg = load_config(
            None, ["data.augment=device", "data.augment_compile=false", f"model.img_size={size}"]
        )
        augment, fused = DeviceAugment(cfg), DeviceAugment(cfg)
        fused.compile = device.type == "cuda"
        video = torch.randint(0, 256, (clips, 16, 3, size, size), dtype=torch.uint8, device=device)

        def per_clip(video=video, augment=augment):
            torch.manual_seed(0)
            return torch.stack([augment.tf.colour(clip) for clip in video])

        def batched_by(aug, video=video):
            def run():
                torch.manual_seed(0)
                return aug.colour(video)

            return run

        batched, compiled = batched_by(augment), batched_by(fused)

        reference = per_clip()
        assert torch.equal(reference, batched())
        variants = [("per_clip", per_clip), ("batched", batched)]
        row = {"clips": clips, "shape": [16, 3, size, size]}
        if fused.compile:
            diff = (compiled().int() - reference.int()).abs()
            row["compiled_max_diff"], row["compiled_pixels_differing"] = (
                diff.max().item(),
                diff.gt(0).float().mean().item(),
            )
            variants.append(("compiled", compiled))
        for name, fn in variants:
            timer = Timer(
                "fn(); sync()",
                globals={
                    "fn": fn,
                    "sync": torch.cuda.synchronize if device.type == "cuda" else (lambda: None),
                },
            )
            runs = args.runs if size >= 64 else 10 * args.runs  # the host-bound case: more, shorter runs
            row[f"{name}_ms"] = round(timer.timeit(runs).median * 1e3, 1)
        row["speedup"] = round(row["per_clip_ms"] / row["batched_ms"], 2)
        if "compiled_ms" in row:
            row["compiled_speedup"] = round(row["per_clip_ms"] / row["compiled_ms"], 2)
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
