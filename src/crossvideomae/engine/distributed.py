"""torch.distributed for ``torchrun``: process group, DDP / FSDP wrapping, full state dicts, resume positions.

Every helper is a no-op in a single process, so the training and evaluation code reads the same with one GPU
or many. Launch with ``torchrun --nproc_per_node N -m crossvideomae <command> ...`` (docs/DISTRIBUTED.md).

Sharding (``dist.fsdp``) uses torch's FSDP2 ``fully_shard``: every transformer block is its own unit (each
element of every ``nn.ModuleList``), the rest of the model is the root unit. Checkpoints always hold the *full*
state (gathered onto rank 0, in the layout a single process writes), so a run can resume on any number of
GPUs, with or without sharding.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn


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
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda and local >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ValueError(
            f"LOCAL_RANK={local}, but this machine shows {n} CUDA device(s): start at most {n} processes per "
            f"node (torchrun --nproc_per_node {n}), or run the processes on the CPU with dist.backend=gloo"
        )
    device = torch.device("cuda", local) if use_cuda else None
    if is_distributed():  # a second command in the same process (e.g. readout's sub-runs)
        return device
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if device is not None:
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, device_id=device)
    atexit.register(_leave)
    if not is_main_process():
        _silence_print()
    return device


def _silence_print() -> None:
    """Rank 0 alone prints (MAE's ``setup_for_distributed``): the tasks' summaries would otherwise appear once
    per GPU. ``print(..., force=True)`` still prints; warnings and tracebacks go to stderr as usual."""
    import builtins

    builtin_print = builtins.print

    def print_on_rank0(*args, force: bool = False, **kwargs) -> None:
        if force:
            builtin_print(*args, **kwargs)

    builtins.print = print_on_rank0


def _leave() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
        x /= world_size()
    return x


def _comm_device() -> torch.device:
    """Where a tensor must live for this process group's collectives."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_over_ranks(values: dict[str, Any]) -> dict[str, float]:
    """Scalars (tensors or floats) averaged over the ranks in one all-reduce: the global-batch figures when
    every rank holds the mean of an equal share of the batch. Tensors on one device are stacked there and
    read with one transfer (one host synchronisation on a GPU)."""
    if not values:
        return {}
    x = [torch.as_tensor(v, dtype=torch.float64) for v in values.values()]
    if len({t.device for t in x}) > 1:
        x = [t.to(_comm_device()) for t in x]
    return dict(zip(values, ranks_mean(torch.stack(x)).tolist(), strict=True))


def ranks_mean(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float64, averaged over the ranks in one all-reduce (on the device the collectives need; in one
    process ``x``'s own, with no copy when it is float64 already). Nothing is read to the host."""
    x = x.to(torch.float64)
    return all_reduce_mean(x.to(_comm_device())) if is_distributed() else x


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (one small all-reduce). Decisions that change the collectives ahead,
    such as stopping on a signal that reached some ranks a step earlier than others, must be taken together."""
    if not is_distributed():
        return flag
    x = torch.tensor([float(flag)], device=_comm_device())
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return bool(x.item())


def global_batches_done(batches: int, batch: int, world: int, new_batch: int, new_world: int) -> int:
    """Batches per rank under (``new_batch``, ``new_world``) that cover the samples ``batches`` per-rank batches
    covered under (``batch``, ``world``).

    ``DistributedSampler`` deals one permutation of (seed, epoch) round-robin (rank r takes positions r, r + W,
    ...), so after k batches of b per rank the ranks together have read exactly the first k*b*W positions,
    whatever W is: resuming on another number of GPUs continues the epoch at the same place in that order
    (rounded down to a whole new global batch: at most one global batch is read twice).
    """
    return batches * batch * world // (new_batch * new_world)


# ------------------------------------------------------------------------------------------------ wrapping
# FSDP models -> rank 0's unsharded twin on the CPU (see `gathered`); None on the other ranks.
_TWINS: weakref.WeakKeyDictionary[nn.Module, nn.Module | None] = weakref.WeakKeyDictionary()


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def wrap_model(
    model: nn.Module, device: torch.device, fsdp: bool = False, groups: list[dict] | None = None
) -> tuple[nn.Module, list[dict] | None]:
    """The module to train under torchrun, and ``groups`` (optimiser parameter groups) pointing at its
    parameters. One process: ``model`` unchanged. Else DDP, or with ``fsdp`` FSDP2 (``model`` is sharded in
    place and is itself the returned module; sharding replaces the parameter objects, hence the regrouping)."""
    if world_size() == 1:
        return model, groups
    if not fsdp:
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=ids, gradient_as_bucket_view=True
        ), groups
    from torch.distributed.fsdp import fully_shard

    for t in [*model.parameters(), *model.buffers()]:  # DDP does this itself; fully_shard does not
        dist.broadcast(t.data, src=0)
    names = {id(p): n for n, p in model.named_parameters()}
    _TWINS[model] = copy.deepcopy(model).cpu() if is_main_process() else None
    for blocks in [m for m in model.modules() if isinstance(m, nn.ModuleList)]:
        for block in blocks:
            fully_shard(block)
    fully_shard(model)
    if groups is not None:
        params = dict(model.named_parameters())
        groups = [{**g, "params": [params[names[id(p)]] for p in g["params"]]} for g in groups]
    return model, groups


def replicated(x: torch.Tensor) -> torch.Tensor:
    """A plain tensor of ``x``'s full value (FSDP's gradient norm is a DTensor)."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x


# ------------------------------------------------------------------------------------------------ state
def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model, optimizer) state dicts as one process would write them. Under FSDP a collective: call it on every
    rank; the full state lands on rank 0 (on the CPU), the other ranks get empty dicts."""
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=opts)
    if not optim_sd:
        return model_sd, {}
    # parameter names -> the positions optimizer.state_dict() uses (in group order)
    pos = {name: i for i, name in enumerate(n for g in optim_sd["param_groups"] for n in g["params"])}
    return model_sd, {
        "state": {pos[name]: s for name, s in optim_sd["state"].items()},
        "param_groups": [{**g, "params": [pos[n] for n in g["params"]]} for g in optim_sd["param_groups"]],
    }


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, model_sd: dict, optim_sd: dict
) -> None:
    """Load a checkpoint written by :func:`full_state` (any world size, sharded or not) on every rank."""
    if not is_sharded(model):
        model.load_state_dict(model_sd)
        optimizer.load_state_dict(optim_sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    name_of = {p: n for n, p in model.named_parameters()}
    names = [name_of[p] for g in optimizer.param_groups for p in g["params"]]
    by_name = {
        "state": {names[i]: s for i, s in optim_sd["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optim_sd["param_groups"]],
    }
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_sd,
        optim_state_dict=by_name,
        options=StateDictOptions(full_state_dict=True),
    )


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[nn.Module | None]:
    """``model`` with its full weights for rank-0-only work (pictures, export): the model itself when it is not
    sharded; under FSDP (a collective: enter it on every rank) rank 0's unsharded twin, on the model's device
    for the duration, and None on the other ranks."""
    if not is_sharded(model):
        yield model
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    model_sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    twin = _TWINS.get(model)
    if twin is None:
        yield None
        return
    device = next(model.parameters()).device
    twin.load_state_dict(model_sd)
    twin.to(device).train(model.training)
    try:
        yield twin
    finally:
        twin.cpu()
