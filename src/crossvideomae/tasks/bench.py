"""``crossvideomae bench``: time full pretraining steps (forward, backward, AdamW) on the current GPU.

For the configured model and batch it reports ms/step, clips/s (one clip = one sample: two video views and its
sampled frames), analytic model TFLOP/s, MFU against a bf16 matrix-product ceiling measured in the same
process, and peak memory; then the same for Hugging Face's ``VideoMAEForPreTraining`` (one view, same batch,
video mask ratio, SDPA, bf16 autocast, fused AdamW) as the baseline; with ``--loader``, the step again fed by
the real loader (``data.train_list``, or ``data.frame_shards``), and the ratio of the two step rates, for each
repeated-sampling factor of ``--repeats`` (the loader then batches B / r videos, so the step always sees B clips).

    crossvideomae bench -c vitb_k400 --compile-loss --profile 3 mask.video_ratio=0.9 mask.image_ratio=0.9 train.compile=true

Inputs are random tensors already on the device (never zeros); each step draws fresh masks, as training does.
MFU counts model FLOPs only: every matrix product and the two attention products, forward x 3 for forward and
backward (x 2 for the patch projections, whose input needs no gradient), with the patch projections over visible
tokens only: what the model must compute, not what a particular implementation does.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils import benchmark

from ..config import Config, vit_dims
from ..engine.optim import build_adamw, param_groups, scaled_lr
from ..losses import CrossVideoMAELoss
from ..models import build_model, num_visible

Batch = dict[str, torch.Tensor]
Step = Callable[[Batch], torch.Tensor]


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
        "--profile", type=int, default=0, metavar="N", help="profile N steps; top kernels into the results"
    )
    parser.add_argument(
        "--compile-loss",
        action="store_true",
        help="compile the loss with the model as one graph (with train.compile)",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay the compiled step (forward, backward) as CUDA graphs (with --compile-loss)",
    )


# ------------------------------------------------------------------------------------------------ FLOPs
def _blocks_flops(tokens: int, width: int, depth: int, mlp_ratio: float) -> float:
    """Forward FLOPs of ``depth`` transformer blocks over one sequence: qkv, proj, MLP, QK^T and AV."""
    return depth * (2 * tokens * width * width * (4 + 2 * mlp_ratio) + 4 * tokens * tokens * width)


def _grids(cfg: Config) -> tuple[int, int, int, int, int]:
    """(N video tokens, n visible, pixels per tubelet, image patches, visible image patches)."""
    m = cfg.model
    t, g = m.num_frames // m.tubelet_size, m.img_size // m.patch_size
    n = num_visible((t, g, g), cfg.mask.video_ratio, cfg.mask.video_type)
    n_img = num_visible((1, g, g), cfg.mask.image_ratio, "random")
    return t * g * g, n, 3 * m.tubelet_size * m.patch_size**2, g * g, n_img


def pretrain_flops(cfg: Config) -> float:
    """Model FLOPs of one CrossVideoMAE training step: two views, image branch, decoder; backward = 2 x forward,
    except for the patch projections, whose input (pixels) needs no gradient."""
    m = cfg.model
    width, depth, _ = vit_dims(m)
    E, r = m.embed_dim, m.mlp_ratio
    N, n, P, _, n_img = _grids(cfg)
    video = _blocks_flops(n, width, depth, r) + 2 * n * width * E  # f_u, g_u
    decoder = _blocks_flops(N, E, m.decoder_depth, r) + 2 * N * E * P  # all tokens, head e_u
    image = _blocks_flops(n_img + 1, width, depth, r) + 2 * n_img * width * E  # f_f (with cls), g_f
    embed = 2 * (2 * n * P * width) + 2 * n_img * 3 * m.patch_size**2 * width  # per sample, visible tokens
    B, F = cfg.data.batch_size, cfg.data.num_sampled_frames
    return 3.0 * B * (2 * (video + decoder) + F * image) + 2.0 * B * embed


def videomae_flops(cfg: Config) -> float:
    """Model FLOPs of one VideoMAE training step (one view; the head runs on hidden tokens only)."""
    m = cfg.model
    width, depth, _ = vit_dims(m)
    E, r = m.embed_dim, m.mlp_ratio
    N, n, P, _, _ = _grids(cfg)
    per_clip = _blocks_flops(n, width, depth, r) + 2 * n * width * E
    per_clip += _blocks_flops(N, E, m.decoder_depth, r) + 2 * (N - n) * E * P
    return cfg.data.batch_size * (3.0 * per_clip + 2.0 * (2 * n * P * width))


# ------------------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer(fn: Callable[[], Any]) -> benchmark.Timer:
    """``torch.utils.benchmark.Timer`` of ``fn()``: it synchronises the device before and after what it times,
    and runs two untimed calls first; with this process's thread count (the Timer's default is one thread)."""
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())


def time_calls(fn: Callable[[], Any], steps: int) -> list[float]:
    """Milliseconds of each of ``steps`` calls (host and device work of the call)."""
    timer = _timer(fn)
    return [1e3 * timer.timeit(1).mean for _ in range(steps)]


def matmul_ceiling(device: torch.device, size: int = 8192, steps: int = 20) -> float:
    """bf16 matrix-product rate (TFLOP/s, median of ``steps``) on random operands: the MFU denominator."""
    if device.type != "cuda":
        size = min(size, 256)
    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    ms = statistics.median(time_calls(lambda: a @ b, steps))
    return 2 * size**3 / (ms * 1e-3) / 1e12


def peak_memory_gib(device: torch.device) -> float:
    """Peak of allocated tensors; under CUDA graphs the graphs' private pools count only in ``reserved_gib``."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def measure(
    step: Step, batches: list[Batch], warmup: int, steps: int, device: torch.device
) -> dict[str, float]:
    """Run ``warmup`` then ``steps`` steps, cycling through ``batches``; ms/step (median, mean) and peak memory."""
    k = iter(range(10**9))

    def call() -> torch.Tensor:
        return step(batches[next(k) % len(batches)])

    for _ in range(warmup):
        call()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ms = time_calls(call, steps)
    wall = 1e3 * _timer(call).timeit(steps).mean  # back to back, synchronised only at both ends
    return {
        "ms_per_step": statistics.median(ms),
        "ms_mean": statistics.fmean(ms),
        "ms_wall": wall,
        "peak_mem_gib": peak_memory_gib(device),
        "reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30
        if device.type == "cuda"
        else float("nan"),
    }


def summarise(figures: dict[str, float], flops: float, batch: int, ceiling: float) -> dict[str, float]:
    s = figures["ms_per_step"] * 1e-3
    tflops = flops / s / 1e12
    return {
        **figures,
        "clips_per_s": batch / s,
        "tflop_per_step": flops / 1e12,
        "tflops": tflops,
        "mfu": tflops / ceiling,
    }


# ------------------------------------------------------------------------------------------------ steps
def random_batch(cfg: Config, device: torch.device) -> Batch:
    """A pretraining batch of random normalised pixels, in the layout ``pretrain_collate`` gives."""
    m, B, F = cfg.model, cfg.data.batch_size, cfg.data.num_sampled_frames
    video = (B, 3, m.num_frames, m.img_size, m.img_size)
    index = torch.randint(0, m.num_frames, (B, F), device=device)
    return {
        "video1": torch.randn(video, device=device),
        "video2": torch.randn(video, device=device),
        "images": torch.randn(B, F, 3, m.img_size, m.img_size, device=device),
        "frame_index1": index,
        "frame_index2": index.clone(),
    }


def _adamw(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.AdamW:
    """AdamW as pretraining builds it: the engine's weight-decay groups, lr scaled by this batch."""
    return build_adamw(
        param_groups(model, cfg.optim.weight_decay),
        scaled_lr(cfg.optim, cfg.data.batch_size),
        cfg.optim,
        device,
    )


def autocast_for(cfg: Config, device: torch.device) -> torch.autocast:
    return torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.train.precision == "bf16"
    )


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> None:
    """Clip (if set), AdamW, free the gradients: no host synchronisation."""
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def pretrain_step(
    cfg: Config, device: torch.device, compile_loss: bool = False, cuda_graphs: bool = False
) -> tuple[Step, nn.Module]:
    """The training step of ``crossvideomae pretrain`` (model, losses, AdamW with the engine's parameter groups),
    on ``device``. ``train.compile`` compiles the model; with ``compile_loss`` the loss joins its graph, and with
    ``cuda_graphs`` that graph (forward and backward) is replayed as CUDA graphs."""
    model = build_model(cfg).to(device).train()
    criterion = CrossVideoMAELoss(cfg.loss)
    optimizer = _adamw(model, cfg, device)
    autocast = autocast_for(cfg, device)
    net = torch.compile(model) if cfg.train.compile and not compile_loss else model

    def loss(batch: Batch) -> torch.Tensor:
        with autocast:
            out = net(
                batch["video1"],
                batch["video2"],
                batch["images"],
                batch["frame_index1"],
                batch["frame_index2"],
            )
            return criterion(out)["total"]

    if cfg.train.compile and compile_loss:
        loss_fn = torch.compile(loss, mode="reduce-overhead" if cuda_graphs else None)
    else:
        loss_fn = loss
    inputs: Batch = {}

    def fixed(batch: Batch) -> Batch:
        """CUDA graphs read their inputs from fixed addresses: the first batch's device tensors become the input
        buffers, and later batches are copied into them (a loader's host-to-device copy can land there)."""
        for k, v in batch.items():
            if k not in inputs:
                inputs[k] = v if v.device.type == device.type else torch.empty_like(v, device=device)
                torch._dynamo.mark_static_address(inputs[k])
            if v is not inputs[k]:
                inputs[k].copy_(v, non_blocking=True)
        return inputs

    def step(batch: Batch) -> torch.Tensor:
        total = loss_fn(fixed(batch) if cuda_graphs else batch)
        total.backward()
        optimizer_step(model, optimizer, cfg.optim.clip_grad)
        return total.detach()

    return step, model


def videomae_step(cfg: Config, device: torch.device) -> tuple[Step, Callable[[], Batch]]:
    """Hugging Face ``VideoMAEForPreTraining`` of the same size, SDPA attention, norm-pix loss, one view, a random
    mask of the configured video ratio per step; bf16 autocast and the same fused AdamW set-up."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    m = cfg.model
    width, depth, heads = vit_dims(m)
    hf = VideoMAEConfig(
        image_size=m.img_size,
        patch_size=m.patch_size,
        num_frames=m.num_frames,
        tubelet_size=m.tubelet_size,
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=int(width * m.mlp_ratio),
        qkv_bias=m.qkv_bias,
        use_mean_pooling=False,
        decoder_hidden_size=m.embed_dim,
        decoder_num_hidden_layers=m.decoder_depth,
        decoder_num_attention_heads=m.decoder_heads,
        decoder_intermediate_size=int(m.embed_dim * m.mlp_ratio),
        norm_pix_loss=True,
    )
    hf._attn_implementation = "sdpa"
    model = VideoMAEForPreTraining(hf).to(device).train()
    optimizer = _adamw(model, cfg, device)
    autocast = autocast_for(cfg, device)
    N, n, _, _, _ = _grids(cfg)
    B = cfg.data.batch_size

    def step(batch: Batch) -> torch.Tensor:
        noise = torch.rand(B, N, device=device)
        hidden = torch.ones(B, N, dtype=torch.bool, device=device).scatter(1, noise.argsort(1)[:, :n], False)
        with autocast:
            total = model(batch["pixel_values"], bool_masked_pos=hidden).loss
        total.backward()
        optimizer_step(model, optimizer, cfg.optim.clip_grad)
        return total.detach()

    def make_batch() -> Batch:
        return {"pixel_values": torch.randn(B, m.num_frames, 3, m.img_size, m.img_size, device=device)}

    return step, make_batch


def host_syncs(step: Step, batch: Batch, device: torch.device) -> list[str]:
    """The synchronising CUDA calls of one step, as PyTorch's sync debug mode reports them (none = the host never
    waits for the device inside the step)."""
    if device.type != "cuda":
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # the mode's own one-off "Synchronization debug mode is a prototype feature" notice is not a sync
    messages = [str(w.message) for w in caught]
    return [m.splitlines()[0][:200] for m in messages if "synchronizing" in m and "prototype" not in m]


def profile_steps(
    step: Step, batch: Batch, steps: int, device: torch.device, out: Path, top: int = 15
) -> dict[str, Any]:
    """Kernel table of ``steps`` steps (``out``/profile.txt) and the ``top`` kernels by device time per step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(batch)
        _sync(device)
    events = prof.key_averages()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    out.write_text(events.table(sort_by=key, row_limit=60, max_name_column_width=120))
    if device.type != "cuda":
        return {}
    kernels = [
        e
        for e in events
        if e.device_type == torch.autograd.DeviceType.CUDA and not e.key.startswith("Optimizer.")
    ]
    groups: dict[str, float] = {}
    for e in kernels:
        groups[_kernel_group(e.key)] = groups.get(_kernel_group(e.key), 0.0) + _device_us(e) / steps / 1e3
    kernels.sort(key=_device_us, reverse=True)
    rows = [
        {"kernel": e.key[:110], "ms_per_step": _device_us(e) / steps / 1e3, "calls_per_step": e.count / steps}
        for e in kernels[:top]
    ]
    busy = sum(groups.values())
    return {
        "kernel_ms_per_step": busy,
        "kernel_groups_ms": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
        "top_kernels": rows,
    }


def _kernel_group(name: str) -> str:
    n = name.lower()
    if "sdpa" in n or "fmha" in n or "flash" in n or "attention" in n or n.startswith("void cudnn::fusion"):
        return "attention"
    if "nvjet" in n or "gemm" in n or "cutlass" in n or "xmma" in n:
        return "matmul"
    if "multi_tensor_apply" in n:
        return "optimizer"
    if "triton" in n:
        return "triton (fused elementwise, norms, reductions)"
    return "other (aten elementwise, reductions, copies)"


def _device_us(event: Any) -> float:
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)


# ------------------------------------------------------------------------------------------------ loader
def loader_steps(cfg: Config, step: Step, device: torch.device, warmup: int, steps: int) -> dict[str, float]:
    """Steps fed by the real loader (``build_pretrain_dataset`` + ``pretrain_collate``, pinned, non-blocking
    copies, then ``pretrain_inputs``: the augmentation on the device with ``data.augment=device``): the same
    step, so the difference to the in-memory rate is what the loader costs. With ``data.repeated_sampling`` = r
    the loader batches B / r videos of r clips each."""
    from torch.utils.data import DataLoader

    from ..data import build_pretrain_dataset, pretrain_collate
    from ..data.device_augment import pretrain_inputs

    B, r = cfg.data.batch_size, cfg.data.repeated_sampling
    if B % r:
        raise ValueError(f"data.batch_size={B} is not a multiple of data.repeated_sampling={r}")
    dataset = build_pretrain_dataset(cfg, split="train")
    inputs = pretrain_inputs(cfg)
    loader = DataLoader(
        dataset,
        batch_size=B // r,
        shuffle=True,
        collate_fn=pretrain_collate,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=cfg.data.num_workers > 0,
    )
    keys = ("video1", "video2", "images", "frame_index1", "frame_index2")

    def feed(batch: dict[str, Any]) -> None:
        batch = inputs(
            {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        )
        step({k: batch[k] for k in keys})

    it = _forever(loader)
    for _ in range(warmup):
        feed(next(it))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        feed(next(it))
    _sync(device)
    s = (time.perf_counter() - t0) / steps
    return {
        "repeated_sampling": r,
        "augment": cfg.data.augment,
        "ms_per_step": 1e3 * s,
        "clips_per_s": B / s,
        "videos_per_s": B / r / s,
        "videos": len(dataset),
    }


def _forever(loader):
    while True:
        yield from loader


# ------------------------------------------------------------------------------------------------ command
def run(cfg: Config, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")
    steps, warmup = args.steps, args.warmup
    if args.cuda_graphs and not (args.compile_loss and cfg.train.compile and device.type == "cuda"):
        raise ValueError("bench --cuda-graphs needs CUDA, --compile-loss and train.compile=true")
    ceiling = matmul_ceiling(device)
    B = cfg.data.batch_size
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "ceiling_tflops": ceiling,
        "batch": B,
        "compile": cfg.train.compile,
        "compile_loss": args.compile_loss,
        "cuda_graphs": args.cuda_graphs,
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

    step, _ = pretrain_step(cfg, device, args.compile_loss, cuda_graphs=args.cuda_graphs)
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
                real = loader_steps(rcfg.validate(), step, device, warmup=3, steps=steps)
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
