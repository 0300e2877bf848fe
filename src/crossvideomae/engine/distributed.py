"""torch.distributed set-up for ``torchrun``; every helper is a no-op in a single process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def init_distributed(backend: str = "auto") -> torch.device | None:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); returns this rank's CUDA device
    when there is one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return None
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    device = None
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
        x /= world_size()
    return x
