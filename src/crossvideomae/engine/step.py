"""One training step for every training task, the benchmarks and the tests.

:class:`TrainStep` owns what happens to a batch once it is on the device: the task's ``prepare`` (augmentation
on the device, mixing), the loss under bf16 autocast (on CUDA, ``train.precision=bf16``), backward (divided by
the accumulation steps; DDP synchronises only on the last micro-step), gradient clipping and the finiteness
check, the learning rate and AdamW. ``train.compile`` compiles the model and the loss as one graph on one
process (``train.compile_loss``, the default) or the model alone (under DDP / FSDP, whose hooks dynamo knows);
``train.cuda_graphs`` replays that one graph, forward and backward, as CUDA graphs. ``fit`` takes its
optimiser steps through it, and ``bench`` times the same object built by the same :func:`train_step`, so the
benchmark's speed is the speed of ``pretrain``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from ..config import Config, ConfigError
from . import distributed as D
from .optim import build_adamw, param_groups, set_lr

Batch = dict[str, Any]
LossFn = Callable[[nn.Module, Batch], dict[str, torch.Tensor]]
COMPILE_MODES = ("none", "model", "step")


class TrainStep:
    """``loss_fn(model, batch) -> {name: scalar}`` (with a ``"total"``) made into optimiser steps.

    ``model`` is the module the loss calls (DDP / FSDP-wrapped under torchrun), ``raw_model`` the module whose
    parameters are clipped and checked (the same one without a wrapper). ``compile``: ``none``, ``model`` (the
    model compiled) or ``step`` (``prepare`` excluded, the loss and the model as one graph; with
    ``cuda_graphs`` replayed as CUDA graphs, its inputs copied into fixed buffers); ``compile_options`` go to
    ``torch.compile`` of the step (the tests trace it with ``backend="aot_eager", fullgraph=True``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        *,
        precision: str = "fp32",
        clip_grad: float = 0.0,
        accum_steps: int = 1,
        compile: str = "none",
        cuda_graphs: bool = False,
        prepare: Callable[[Batch], Batch] | None = None,
        raw_model: nn.Module | None = None,
        compile_options: dict[str, Any] | None = None,
    ):
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
        if cuda_graphs and (compile != "step" or device.type != "cuda"):
            raise ValueError("CUDA graphs replay the compiled step (compile='step') on a CUDA device")
        self.model, self.raw_model = model, raw_model if raw_model is not None else model
        self.optimizer, self.device = optimizer, device
        self.clip_grad, self.accum_steps, self.cuda_graphs = clip_grad, accum_steps, cuda_graphs
        self.prepare = prepare
        self.autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and precision == "bf16"
        )
        net = torch.compile(model) if compile == "model" else model

        def loss(batch: Batch) -> dict[str, torch.Tensor]:
            with self.autocast:
                return loss_fn(net, batch)

        options = {"mode": "reduce-overhead" if cuda_graphs else None, **(compile_options or {})}
        self.loss = torch.compile(loss, **options) if compile == "step" else loss
        self._buffers: dict[str, torch.Tensor] = {}

    def backward(self, batch: Batch, sync: bool = True) -> dict[str, torch.Tensor]:
        """One micro-step: prepare, loss, backward of ``total / accum_steps``; under DDP the gradients are
        all-reduced only when ``sync``. Returns the loss terms."""
        if self.prepare is not None:
            batch = self.prepare(batch)
        if self.cuda_graphs:
            batch = self._fixed(batch)
        no_sync = not sync and isinstance(self.model, nn.parallel.DistributedDataParallel)
        with self.model.no_sync() if no_sync else contextlib.nullcontext():
            terms = self.loss(batch)
            (terms["total"] / self.accum_steps).backward()
        return terms

    def update(self, total: torch.Tensor, lr: float | None = None) -> tuple[bool, torch.Tensor]:
        """Clip (``clip_grad`` > 0), check that ``total`` and the gradient norm are finite (one host
        synchronisation), then set ``lr`` (when given) and step AdamW, or skip the step; the gradients are freed
        either way. Returns (finite, gradient norm)."""
        ok, norm, _ = self.update_and_read(total, lr)
        return ok, norm

    def update_and_read(
        self, total: torch.Tensor, lr: float | None = None, read: torch.Tensor | None = None
    ) -> tuple[bool, torch.Tensor, list[float]]:
        """:meth:`update` that also brings the gradient norm and ``read`` (a 1-D tensor: a log step's loss terms)
        to the host in the finiteness check's one synchronisation. Returns (finite, gradient norm, [gradient
        norm, *read] as floats, or [] without ``read``)."""
        norm = self.grad_norm(total.new_zeros(()))
        finite = torch.isfinite(total) & torch.isfinite(norm)
        if read is None:
            ok, values = bool(finite), []
        else:
            f64 = torch.float64
            parts = [finite.reshape(1).to(f64), norm.detach().reshape(1).to(f64), read.to(norm.device, f64)]
            flag, *values = torch.cat(parts).tolist()
            ok = flag == 1.0
        if ok:
            if lr is not None:
                set_lr(self.optimizer, lr)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return ok, norm, values

    def grad_norm(self, none: torch.Tensor) -> torch.Tensor:
        """The norm of the gradients (all ranks' under FSDP), clipped to ``clip_grad`` when > 0; ``none`` when no
        parameter has a gradient."""
        params = [p for p in self.raw_model.parameters() if p.grad is not None]
        max_norm = self.clip_grad if self.clip_grad > 0 else float("inf")
        return D.replicated(nn.utils.clip_grad_norm_(params, max_norm)) if params else none

    def __call__(
        self, batch: Batch, lr: float | None = None, queued: Callable[[], Any] | None = None
    ) -> dict[str, torch.Tensor]:
        """A whole optimiser step on ``batch`` (``accum_steps`` micro-steps on it); the last micro-step's terms.
        ``queued`` is called once the backward passes are queued, before the update's host synchronisation
        (a loader's :meth:`DeviceFeed.advance <.prefetch.DeviceFeed.advance>`)."""
        for micro in range(1, self.accum_steps + 1):
            terms = self.backward(batch, sync=micro == self.accum_steps)
        if queued is not None:
            queued()
        self.update(terms["total"], lr)
        return terms

    def _fixed(self, batch: Batch) -> Batch:
        """CUDA graphs read their inputs from fixed addresses: the first batch's device tensors become the input
        buffers, and later batches are copied into them (a loader's host-to-device copy can land there)."""
        out = dict(batch)
        for k, v in batch.items():
            if not torch.is_tensor(v):
                continue
            if k not in self._buffers:
                buf = v if v.device.type == self.device.type else torch.empty_like(v, device=self.device)
                torch._dynamo.mark_static_address(buf)
                self._buffers[k] = buf
            if v is not self._buffers[k]:
                self._buffers[k].copy_(v, non_blocking=True)
            out[k] = self._buffers[k]
        return out


def compile_mode(cfg: Config, processes: int = 1) -> str:
    """What ``train.compile`` compiles: the model and the loss as one graph on one process (unless
    ``train.compile_loss=false``), the model alone under DDP / FSDP."""
    tc = cfg.train
    if not tc.compile:
        return "none"
    return "step" if tc.compile_loss and processes == 1 else "model"


def check_cuda_graphs(cfg: Config, device: torch.device, processes: int = 1) -> str:
    """The compile mode of ``cfg``, after checking that ``train.cuda_graphs`` has the compiled step it replays."""
    mode = compile_mode(cfg, processes)
    if cfg.train.cuda_graphs and (mode != "step" or device.type != "cuda"):
        raise ConfigError(
            "config key 'train.cuda_graphs': replays the compiled step, so it needs a CUDA device, "
            f"train.compile=true, train.compile_loss=true and one process (got {device.type}, "
            f"{processes} process(es), compile mode {mode!r})"
        )
    return mode


def train_step(
    cfg: Config,
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    prepare: Callable[[Batch], Batch] | None = None,
    raw_model: nn.Module | None = None,
    processes: int = 1,
) -> TrainStep:
    """The :class:`TrainStep` of ``cfg`` (``train.precision``, ``train.compile``, ``train.compile_loss``,
    ``train.cuda_graphs``, ``optim.clip_grad``, ``optim.accum_steps``) over ``processes`` processes."""
    mode = check_cuda_graphs(cfg, device, processes)
    return TrainStep(
        model,
        loss_fn,
        optimizer,
        device,
        precision=cfg.train.precision,
        clip_grad=cfg.optim.clip_grad,
        accum_steps=cfg.optim.accum_steps,
        compile=mode,
        cuda_graphs=cfg.train.cuda_graphs,
        prepare=prepare,
        raw_model=raw_model,
    )


def build_step(
    cfg: Config,
    model: nn.Module,
    loss_fn: LossFn,
    device: torch.device,
    lr: float,
    *,
    groups: list[dict] | None = None,
    prepare: Callable[[Batch], Batch] | None = None,
) -> TrainStep:
    """``model`` moved to ``device`` and wrapped for the processes of torchrun (DDP, or FSDP with
    ``dist.fsdp``), AdamW over ``groups`` (default: the engine's weight-decay groups) at ``lr``, and the
    :func:`train_step` of ``cfg`` around them: what ``fit`` trains with and what ``bench`` times."""
    model.to(device)
    wrapped, groups = D.wrap_model(model, device, cfg.dist.fsdp, groups)
    optimizer = build_adamw(groups or param_groups(model, cfg.optim.weight_decay), lr, cfg.optim, device)
    return train_step(
        cfg, wrapped, loss_fn, optimizer, device, prepare=prepare, raw_model=model, processes=D.world_size()
    )
