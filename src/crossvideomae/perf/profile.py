"""What a step does on the device: its host synchronisations and its kernels by device time."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .timing import Batch, Step, sync

# the record_function ranges that a profile reports on its own
MARKED = ("prepare",)


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
    return profile_loop(lambda: step(batch), steps, device, out, top)


def profile_loop(
    call: Callable[[], Any], steps: int, device: torch.device, out: Path, top: int = 15
) -> dict[str, Any]:
    """``call`` ``steps`` times under ``torch.profiler``: the op table by own device time (by own host time on a
    CPU) into ``out``, followed on CUDA by the table by own host time; the ``top`` kernels and the kernel groups
    by device time per step, and per step the host and device time of each ``record_function`` range that the
    code marks (``prepare``: a batch's copy and augmentation, :class:`~crossvideomae.engine.prefetch.DeviceFeed`)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            call()
        sync(device)
    events = prof.key_averages()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    tables = [events.table(sort_by=key, row_limit=60, max_name_column_width=120)]
    if device.type == "cuda":
        tables.append(events.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=120))
    out.write_text("\n\n".join(tables))
    ranges = marked_ranges(events, steps)
    if device.type != "cuda":
        return {"ranges": ranges} if ranges else {}
    kernels = [
        e
        for e in events
        if e.device_type == torch.autograd.DeviceType.CUDA
        and not e.key.startswith("Optimizer.")
        and e.key not in MARKED
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
        **({"ranges": ranges} if ranges else {}),
    }


def marked_ranges(events: Any, steps: int) -> dict[str, dict[str, float]]:
    """Host and device milliseconds per step of each ``MARKED`` range, from its host-side event: on CUDA a range
    also has a device-side twin, which spans the GPU time from its first to its last kernel (waits included)
    and is no kernel either."""
    return {
        e.key: {"host_ms": e.cpu_time_total / steps / 1e3, "device_ms": _device_total_us(e) / steps / 1e3}
        for e in events
        if e.key in MARKED and e.device_type == torch.autograd.DeviceType.CPU
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


def _device_total_us(event: Any) -> float:
    """Device time of an op and what it launched (the kernels of a ``record_function`` range)."""
    return getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
