"""``crossvideomae bench``: time full pretraining steps (forward, backward, AdamW) on the current GPU.

The step it times is the step ``pretrain`` trains with: ``tasks.pretrain.pretrain_step`` builds the same
``engine.step.TrainStep`` that ``fit`` builds, from the same keys (``train.compile``, ``train.compile_loss``,
``train.cuda_graphs``, ``train.precision``, ``optim.clip_grad``...). For the configured model and batch it
reports ms/step, clips/s (one clip = one sample: two video views and its sampled frames), analytic model TFLOP/s,
MFU against a bf16 matrix-product ceiling measured in the same process, and peak memory; then the same for
Hugging Face's ``VideoMAEForPreTraining`` (one view, same batch, video mask ratio, SDPA, bf16 autocast, fused
AdamW) as the baseline; with ``--loader``, the step again fed by the real loader (``data.train_list``, or
``data.frame_shards``), and the ratio of the two step rates, for each repeated-sampling factor of ``--repeats``
(the loader then batches B / r videos, so the step always sees B clips).

    crossvideomae bench -c vitb_k400 --profile 3 mask.video_ratio=0.9 mask.image_ratio=0.9 train.compile=true

Inputs are random tensors already on the device (never zeros; ``data.source=synthetic`` feeds ``pretrain`` the
same); each step draws fresh masks, as training does. Timing, profiling and FLOPs: ``crossvideomae.perf``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..engine.step import check_cuda_graphs
from ..perf import (
    host_syncs,
    loader_steps,
    matmul_ceiling,
    measure,
    pretrain_flops,
    profile_steps,
    summarise,
    videomae_flops,
    videomae_step,
)
from .pretrain import pretrain_step, random_batch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps first (torch.compile runs in these)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the Hugging Face VideoMAE baseline")
    parser.add_argument(
        "--loader", action="store_true", help="also time steps fed by the real loader (data.train_list)"
    )
    parser.add_argument(
        "--repeats",
        type=lambda s: [int(r) for r in s.split(",")],
        default=None,
        metavar="R,R,...",
        help="with --loader: data.repeated_sampling values to time, e.g. 1,2,4 (default: the config's)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile N steps (and, with --loader, N loader-fed steps per r); top kernels into the results",
    )
    parser.add_argument(
        "--compile-loss",
        action="store_true",
        help="train.compile_loss=true (the default): with train.compile, the loss joins the model's graph",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="train.cuda_graphs=true: replay the compiled step as CUDA graphs (CUDA, train.compile=true)",
    )


def run(cfg: Config, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")
    steps, warmup = args.steps, args.warmup
    train = dataclasses.replace(
        cfg.train,
        compile_loss=cfg.train.compile_loss or args.compile_loss,
        cuda_graphs=cfg.train.cuda_graphs or args.cuda_graphs,
    )
    cfg = dataclasses.replace(cfg, train=train).validate()
    check_cuda_graphs(cfg, device)  # before anything is timed
    ceiling = matmul_ceiling(device)
    B = cfg.data.batch_size
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "ceiling_tflops": ceiling,
        "batch": B,
        "compile": cfg.train.compile,
        "compile_loss": cfg.train.compile_loss,
        "cuda_graphs": cfg.train.cuda_graphs,
        "decoder_attention": cfg.model.decoder_attention,
        "grad_checkpointing": cfg.model.grad_checkpointing,
    }
    rows = []
    if not args.no_baseline:
        hf_step, make_batch = videomae_step(cfg, device)
        hf = summarise(
            measure(hf_step, [make_batch(), make_batch()], warmup, steps, device),
            videomae_flops(cfg),
            B,
            ceiling,
        )
        results["videomae_hf"] = hf
        rows.append(("HF VideoMAEForPreTraining, one view", hf))
        del hf_step, make_batch
        torch.cuda.empty_cache() if device.type == "cuda" else None

    torch.manual_seed(cfg.train.seed)
    step = pretrain_step(cfg, device)  # the step of `pretrain`, as fit builds it
    batches = [random_batch(cfg, device), random_batch(cfg, device)]
    ours = summarise(measure(step, batches, warmup, steps, device), pretrain_flops(cfg), B, ceiling)
    ours["host_syncs_per_step"] = len(host_syncs(step, batches[0], device))
    results["crossvideomae"] = ours
    rows.append(("CrossVideoMAE, two views + image", ours))
    if "videomae_hf" in results:
        results["speedup_vs_hf"] = results["videomae_hf"]["ms_per_step"] / ours["ms_per_step"]
    if args.profile:
        results["profile"] = profile_steps(step, batches[0], args.profile, device, out_dir / "profile.txt")
    _print_table(results, rows)  # before the loader run, which depends on files and decoders
    if args.loader:  # real_loader: the first of --repeats; real_loader_repeats: each of them
        rows = results["real_loader_repeats"] = []
        for r in args.repeats or [cfg.data.repeated_sampling]:
            rcfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, repeated_sampling=r))
            name = f"real loader, augment={cfg.data.augment}, r={r}"
            try:
                profile = (args.profile, out_dir / f"profile_loader_r{r}.txt") if args.profile else None
                real = loader_steps(rcfg.validate(), step, device, warmup=3, steps=steps, profile=profile)
            except Exception as err:  # the in-memory figures above still go into results.json
                rows.append({"repeated_sampling": r, "error": f"{type(err).__name__}: {err}"})
                print(f"{name} failed: {rows[-1]['error']}")
                continue
            real["ratio_to_in_memory"] = ours["ms_per_step"] / real["ms_per_step"]
            rows.append(real)
            print(
                f"{name:<38} {real['ms_per_step']:8.1f} {real['clips_per_s']:8.1f}"
                f"   ratio to in-memory {real['ratio_to_in_memory']:.2f}"
            )
            print(
                f"  host per step: {real['host_take_ms']:.1f} ms taking a batch,"
                f" {real['host_ahead_ms']:.1f} ms preparing the next ahead"
            )
            for marked, t in real.get("profile", {}).get("ranges", {}).items():
                print(
                    f"  profiled '{marked}': {t['host_ms']:.1f} ms host, {t['device_ms']:.1f} ms device per step"
                )
            if "kernel_ms_per_step" in real.get("profile", {}):
                print(f"  profiled kernels: {real['profile']['kernel_ms_per_step']:.1f} ms device per step")
        results["real_loader"] = rows[0]
    return results


def _print_table(results: dict[str, Any], rows: list[tuple[str, dict[str, float]]]) -> None:
    ceiling = results["ceiling_tflops"]
    print(f"{results['device']}, torch {results['torch']}: bf16 matmul ceiling {ceiling:.0f} TFLOP/s")
    print(f"{'step':<38} {'ms/step':>8} {'clips/s':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>9}")
    for name, r in rows:
        print(
            f"{name:<38} {r['ms_per_step']:8.1f} {r['clips_per_s']:8.1f} {r['tflops']:8.1f} {r['mfu']:6.1%}"
            f" {r['peak_mem_gib']:9.1f}"
        )
    profile = results.get("profile", {})
    for group, ms in profile.get("kernel_groups_ms", {}).items():
        print(f"  {ms:7.2f} ms  {group}")
    for k in profile.get("top_kernels", []):
        print(f"  {k['ms_per_step']:7.2f} ms  x{k['calls_per_step']:<5.0f} {k['kernel']}")
