"""Timing of steps on a device: milliseconds per call, the bf16 matrix-product ceiling (the MFU denominator),
peak memory, and steps fed by the real loader."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.utils import benchmark

from ..config import Config

if TYPE_CHECKING:
    from pathlib import Path

    from ..engine.step import TrainStep

Batch = dict[str, torch.Tensor]
Step = Callable[[Batch], Any]


def sync(device: torch.device) -> None:
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
    sync(device)
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


def loader_steps(
    cfg: Config,
    step: TrainStep,
    device: torch.device,
    warmup: int,
    steps: int,
    profile: tuple[int, Path] | None = None,
) -> dict[str, Any]:
    """Steps fed by the real loader (``build_pretrain_dataset`` + ``pretrain_collate``, whose workers also draw
    the device augmentation's parameters, pinned, non-blocking copies, then ``pretrain_inputs``: the augmentation
    on the device with ``data.augment=device``; with
    ``data.prefetch`` queued one step ahead on a side stream, as ``fit`` does): the same step, so the
    difference to the in-memory rate is what the loader costs. With ``data.repeated_sampling`` = r the loader
    batches B / r videos of r clips each.

    As in ``pretrain``, one ``DataLoader`` iterator serves every step, its sampler running over as many epochs
    as the timed steps need (the training loop's ``SeededItems`` + ``RunIndices``): the workers keep fetching
    across epoch ends. (A new iterator per epoch, with a few dozen files, left at most an epoch's batches in
    flight: with 48 videos and 32 per batch, one.)

    Where the time goes: ``host_take_ms`` is the host's time per step in taking a batch (waiting for the
    workers; without prefetch also its copy and the augmentation's launches), ``host_ahead_ms`` the time in
    preparing the next one ahead (fetch, copy and launches, inside the step); ``profile`` = (N, file) profiles N
    more steps with ``torch.profiler`` into ``file`` (host ops and device kernels, each sorted by its own time)
    and adds the device time per step of the augmentation's kernels and of the whole step."""
    from torch.utils.data import DataLoader, DistributedSampler

    from ..data import build_pretrain_dataset, pretrain_collate
    from ..data.device_augment import loader_collate, pretrain_inputs
    from ..engine.prefetch import DeviceFeed
    from ..engine.sampling import RunIndices, SeededItems

    B, r = cfg.data.batch_size, cfg.data.repeated_sampling
    if B % r:
        raise ValueError(f"data.batch_size={B} is not a multiple of data.repeated_sampling={r}")
    items = SeededItems(build_pretrain_dataset(cfg, split="train"), cfg.train.seed)
    videos = B // r
    per_epoch = len(items) // videos * videos
    if not per_epoch:
        raise ValueError(
            f"{len(items)} videos make no batch of {videos} (data.batch_size / repeated_sampling)"
        )
    # every step, plus what the workers may still be fetching when the timing ends
    wanted = (warmup + steps + 2 * max(1, cfg.data.num_workers)) * videos
    sampler = DistributedSampler(items, num_replicas=1, rank=0, shuffle=True, seed=cfg.train.seed)
    inputs = pretrain_inputs(cfg)
    loader = DataLoader(
        items,
        batch_size=videos,
        sampler=RunIndices(sampler, 0, 0, -(-wanted // per_epoch), per_epoch),
        collate_fn=loader_collate(inputs, pretrain_collate),
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    keys = ("video1", "video2", "images", "frame_index1", "frame_index2")

    batches = DeviceFeed(iter(loader), device, inputs, cfg.data.prefetch, cfg.data.prefetch_thread)
    host = {"take": 0.0, "ahead": 0.0}

    def ahead() -> None:
        t = time.perf_counter()
        batches.advance()
        host["ahead"] += time.perf_counter() - t

    def feed() -> None:  # as fit: the next batch is queued after backward, before the step's synchronisation
        t = time.perf_counter()
        batch = next(batches)
        host["take"] += time.perf_counter() - t
        step({k: batch[k] for k in keys}, queued=ahead)  # the step's own inputs: the identity

    for _ in range(warmup):
        feed()
    sync(device)
    host.update(take=0.0, ahead=0.0)
    t0 = time.perf_counter()
    for _ in range(steps):
        feed()
    sync(device)
    s = (time.perf_counter() - t0) / steps
    result: dict[str, Any] = {
        "repeated_sampling": r,
        "augment": cfg.data.augment,
        "prefetch": cfg.data.prefetch,
        "prefetch_thread": cfg.data.prefetch_thread,
        "ms_per_step": 1e3 * s,
        "clips_per_s": B / s,
        "videos_per_s": B / r / s,
        "videos": len(items),
        "host_take_ms": 1e3 * host["take"] / steps,
        "host_ahead_ms": 1e3 * host["ahead"] / steps,
    }
    if profile:
        from .profile import profile_loop

        result["profile"] = profile_loop(feed, profile[0], device, profile[1])
    return result
