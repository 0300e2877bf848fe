"""One training loop for every training task (pretraining, test-time adaptation, fine-tuning).

A task hands :func:`fit` a model, a ``loss_fn(model, batch) -> {name: scalar}`` with a ``"total"`` entry, a
dataset and a collate function. The loop owns the rest: device and DDP, a sampler that is a pure function of
(seed, epoch), per-sample random streams (so a resumed run sees exactly the samples and augmentations the
uninterrupted run would have), AdamW with warm-up + cosine per optimiser step, bf16 autocast on CUDA,
gradient accumulation and clipping, skipping of non-finite steps (the step itself: ``engine.step.TrainStep``), checkpoints (atomic) every
``train.ckpt_every`` epochs (and every ``train.ckpt_every_steps`` steps when set), at the end and on SIGTERM /
SIGUSR1 / Ctrl-C, ``metrics.jsonl``, TensorBoard and a progress bar.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ..config import Config, ConfigError, to_dict
from ..files import atomic_link
from . import distributed as D
from .checkpoint import (
    CheckpointError,
    load_resumable,
    rng_state,
    rotate_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from .device import resolve_device
from .metrics_log import MetricsLog
from .optim import lr_at, scaled_lr
from .sampling import RunIndices, SeededItems
from .step import LossFn, build_step
from .stopping import StopFlag, ignore_stop_signals, until_stopped


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimiser steps had a non-finite loss or gradient."""


# ------------------------------------------------------------------------------------------------ state
@dataclass
class RunState:
    epoch: int = 0  # current epoch
    step: int = 0  # optimiser steps taken
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    bad_steps: int = 0  # non-finite steps skipped in total
    consecutive_bad: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # mean terms of each finished epoch
    epoch_sums: dict[str, float] = field(default_factory=dict)  # terms summed over this epoch's good steps
    epoch_good_steps: int = 0  # steps in those sums


# ------------------------------------------------------------------------------------------------ the loop
@dataclass
class Hooks:
    """Optional task callbacks, called on rank 0 only."""

    on_epoch_end: Callable[[int, nn.Module, dict[str, Any], MetricsLog], None] | None = (
        None  # (epoch, model, last batch, log)
    )
    on_end: Callable[[nn.Module, RunState], dict[str, Any]] | None = None  # returns extra results


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def checkpoint_state(
    cfg: Config, model: nn.Module, optimizer: torch.optim.Optimizer, state: RunState
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": to_dict(cfg),
        "epoch": state.epoch,
        "step": state.step,
        "batch_in_epoch": state.batch_in_epoch,
        "bad_steps": state.bad_steps,
        "history": state.history,
        "epoch_sums": state.epoch_sums,
        "epoch_good_steps": state.epoch_good_steps,
        "rng": rng_state(),
        "scaler": None,  # bf16 autocast needs no loss scaling
    }


def fit(
    cfg: Config,
    model: nn.Module,
    loss_fn: LossFn,
    dataset: Dataset,
    collate: Callable,
    out_dir: Path,
    resume: bool = False,
    groups: list[dict] | None = None,
    hooks: Hooks | None = None,
    repeat_batch: int = 1,
    bad_videos: Any | None = None,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset``; returns the run's figures. ``repeat_batch`` > 1 takes that many
    optimiser steps on every batch (test-time adaptation). ``bad_videos`` (a ``BadVideoLog``) counts the files
    the dataset skipped and stops the run past its limit. ``prepare`` runs on every batch on the device before
    the loss (outside a compiled graph: augmentation on the device, mixing)."""
    hooks = hooks or Hooks()
    tc = cfg.train
    local_device = D.init_distributed(cfg.dist.backend)
    device = local_device or resolve_device(tc.device)
    main = D.is_main_process()
    torch.manual_seed(tc.seed + D.rank())

    items = SeededItems(dataset, tc.seed)
    sampler = DistributedSampler(
        items, num_replicas=D.world_size(), rank=D.rank(), shuffle=True, seed=tc.seed, drop_last=True
    )
    bs, accum = cfg.data.batch_size, cfg.optim.accum_steps
    batches_per_epoch = len(sampler) // bs
    if tc.steps_per_epoch:
        batches_per_epoch = min(batches_per_epoch, tc.steps_per_epoch * accum) if batches_per_epoch else 0
    if batches_per_epoch < accum:
        raise ConfigError(
            f"config key 'data.batch_size': {len(items)} videos make {batches_per_epoch} batches of "
            f"data.batch_size={bs} per process, fewer than optim.accum_steps={accum}: lower data.batch_size"
        )
    steps_per_epoch = batches_per_epoch // accum * repeat_batch
    total_steps = steps_per_epoch * tc.epochs
    global_batch = bs * accum * D.world_size()
    peak_lr = scaled_lr(cfg.optim, global_batch)
    warmup = round(cfg.optim.warmup_epochs * steps_per_epoch)
    step = build_step(cfg, model, loss_fn, device, peak_lr, groups=groups, prepare=prepare)  # DDP / FSDP
    raw_model, optimizer = model, step.optimizer

    state = RunState()
    if resume:
        path, ckpt, skipped = load_resumable(out_dir)
        if main:
            for reason in skipped:
                print(f"--resume: skipped {reason}")
        if ckpt is None:
            print(f"--resume: no checkpoint in {out_dir}, starting from scratch")
        else:
            try:
                D.load_full_state(raw_model, optimizer, ckpt["model"], ckpt["optimizer"])
            except (RuntimeError, ValueError, KeyError) as err:
                raise CheckpointError(
                    f"{path}: does not fit the model and optimiser of this config "
                    f"({' '.join(str(err).split())[:300]}); resume with the run's config (its config.yaml)"
                ) from None
            state = RunState(
                ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"], ckpt["bad_steps"], 0, ckpt["history"]
            )
            state.epoch_sums, state.epoch_good_steps = (
                ckpt.get("epoch_sums", {}),
                ckpt.get("epoch_good_steps", 0),
            )
            old = (
                ckpt["config"]["data"]["batch_size"],
                ckpt["config"]["optim"]["accum_steps"],
                int(ckpt.get("world_size", 1)),
            )
            if D.world_size() == old[2]:  # other world sizes: fresh streams
                set_rng_state(ckpt["rng"])
            if old != (bs, accum, D.world_size()):  # same place in the epoch's samples, in this run's batches
                state.batch_in_epoch = D.global_batches_done(
                    state.batch_in_epoch, old[0], old[2], bs, D.world_size()
                )
                state.step = state.epoch * steps_per_epoch + state.batch_in_epoch // accum * repeat_batch
            if main:
                print(f"resumed from {path}: epoch {state.epoch}, step {state.step}")

    if main:  # temporary files of checkpoint writes that a kill -9 interrupted
        for tmp in out_dir.glob(".checkpoint-*.pth.*.tmp"):
            tmp.unlink(missing_ok=True)
    log = MetricsLog(out_dir, main, start_step=state.step)
    stop = StopFlag()
    t0 = time.time()
    first_step = None  # (time, step) once this process's first optimiser step is done: compilation, warm-up
    # seconds between consecutive optimiser steps of one epoch (the last 1000): the step itself with its data
    # wait, without the checkpoint writes and pictures between epochs
    intervals: deque[float] = deque(maxlen=1000)
    last_step_at = None
    last_terms: dict[str, float] = {}
    stopped_by: str | None = None
    save_due = False  # train.ckpt_every_steps: a step checkpoint is written before the next step

    def save(name: str) -> None:
        # the epoch's running sums as the mean over ranks: a resume inside the epoch continues them on every
        # rank, and the mean over ranks of (that + each rank's later sums) is the uninterrupted epoch mean
        state.epoch_sums, state.epoch_good_steps = D.mean_over_ranks(sums), n_sums
        model_sd, optim_sd = D.full_state(raw_model, optimizer)  # gathered onto rank 0 under FSDP
        if main:
            ckpt = checkpoint_state(cfg, raw_model, optimizer, state)
            ckpt["model"], ckpt["optimizer"] = model_sd, optim_sd
            ckpt["world_size"] = D.world_size()
            save_checkpoint(out_dir / name, ckpt)

    loader = DataLoader(
        items,
        batch_size=bs,
        sampler=RunIndices(
            sampler, state.epoch, state.batch_in_epoch * bs, tc.epochs, batches_per_epoch * bs
        ),
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        worker_init_fn=ignore_stop_signals,
        # its own stream for the workers' base seed: drawing it from the global one would make a resumed run
        # draw other masks than the uninterrupted run (the items have their own streams, see SeededItems)
        generator=torch.Generator().manual_seed(tc.seed),
    )
    batches = iter(loader)
    fetch = until_stopped(batches, stop)
    with stop.installed():
        while state.epoch < tc.epochs and stopped_by is None:
            epoch = state.epoch
            skip = state.batch_in_epoch
            sums = {k: torch.tensor(v, device=device) for k, v in state.epoch_sums.items()} if skip else {}
            n_sums = state.epoch_good_steps if skip else 0
            quiet = {} if main else {"disable": True}  # rank 0 leaves it to tqdm (and TQDM_DISABLE)
            bar = tqdm(
                total=batches_per_epoch,
                initial=skip,
                desc=f"epoch {epoch}",
                leave=False,
                dynamic_ncols=True,
                **quiet,
            )
            last_batch = None
            micro = 0
            for batch in itertools.islice(fetch, max(0, batches_per_epoch - skip)):
                if D.any_rank(
                    stop.signal is not None
                ):  # before a step: one in the last step lets the epoch end first
                    stopped_by = (
                        signal.Signals(stop.signal).name if stop.signal else "a signal to another rank"
                    )
                    break
                if save_due:  # where a SIGTERM would save: between steps, before this batch's step
                    save("checkpoint-last.pth")
                    save_due = False
                if bad_videos is not None:
                    bad_videos.update(batch.get("skipped", []))
                    bad_videos.check(len(items))
                batch = _to_device(batch, device)
                last_batch = batch
                for _ in range(repeat_batch):
                    micro += 1
                    sync = micro % accum == 0
                    terms = step.backward(batch, sync)
                    if not sync:
                        continue
                    lr = lr_at(state.step, total_steps, warmup, peak_lr, cfg.optim.min_lr)
                    ok, grad_norm = step.update(terms["total"], lr)
                    if ok:
                        state.consecutive_bad = 0
                    else:
                        state.bad_steps += 1
                        state.consecutive_bad += 1
                    state.step += 1
                    save_due = save_due or (tc.ckpt_every_steps > 0 and state.step % tc.ckpt_every_steps == 0)
                    now = time.time()
                    if first_step is None:
                        first_step = (now, state.step)
                    elif last_step_at is not None:
                        intervals.append(now - last_step_at)
                    last_step_at = now
                    detached = {k: v.detach().float() for k, v in terms.items()}
                    if ok:
                        for k, v in detached.items():
                            sums[k] = sums.get(k, 0.0) + v
                        n_sums += 1
                    if not ok and state.consecutive_bad >= tc.max_bad_steps:
                        save("checkpoint-last.pth")
                        bad = {k: float(v) for k, v in detached.items()}
                        raise NonFiniteLossError(
                            f"{state.consecutive_bad} consecutive non-finite steps, the last at step {state.step} "
                            f"(epoch {epoch}); loss terms {bad}; checkpoint saved to {out_dir / 'checkpoint-last.pth'}"
                        )
                    if state.step % tc.log_every == 0 or state.step == 1:
                        last_terms = D.mean_over_ranks(detached)  # the global batch's terms
                        record = {
                            "step": state.step,
                            "epoch": epoch,
                            "lr": optimizer.param_groups[0]["lr"],
                            **last_terms,
                        }
                        record["grad_norm"] = float(grad_norm)
                        record["bad_steps"] = state.bad_steps
                        log.write(record)
                        bar.set_postfix(loss=f"{last_terms['total']:.4f}", lr=f"{record['lr']:.2e}")
                state.batch_in_epoch += 1
                bar.update(1)
            bar.close()
            last_step_at = None  # the next epoch's first interval would include this epoch's end
            if stopped_by is not None:
                save("checkpoint-last.pth")
                if main:
                    print(f"{stopped_by}: checkpoint saved at step {state.step}; continue with --resume")
                break
            means = {k: v / max(n_sums, 1) for k, v in D.mean_over_ranks(sums).items()}
            state.history.append({"epoch": epoch, **means})
            state.epoch += 1
            state.batch_in_epoch = 0
            if main:
                summary = " ".join(f"{k}={v:.4f}" for k, v in means.items())
                print(f"epoch {epoch}: {summary}")
            if hooks.on_epoch_end is not None and last_batch is not None:
                with D.gathered(raw_model) as full:  # under FSDP a collective, the full model on rank 0
                    if main:
                        hooks.on_epoch_end(epoch, full, last_batch, log)
            if state.epoch % tc.ckpt_every == 0 or state.epoch == tc.epochs:
                save(f"checkpoint-{state.epoch}.pth")
                save_due = False
                if main:  # the same state: a second name for the file, not a second write (or FSDP gather)
                    atomic_link(out_dir / f"checkpoint-{state.epoch}.pth", out_dir / "checkpoint-last.pth")
                    rotate_checkpoints(out_dir, tc.keep_checkpoints)
            D.barrier()
    del fetch, batches  # stops the loader's workers
    log.close()
    end = time.time()
    results: dict[str, Any] = {
        "epochs": state.epoch,
        "steps": state.step,
        "bad_steps": state.bad_steps,
        "wall_time_s": round(end - t0, 1),
        # after the first step, data loading and checkpoint writes included
        "s_per_step": (
            round((end - first_step[0]) / (state.step - first_step[1]), 4)
            if first_step and state.step > first_step[1]
            else None
        ),
        "step_time_median_s": round(float(np.median(intervals)), 4) if intervals else None,
        "peak_memory_gib": (
            round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None
        ),
        "final_terms": state.history[-1] if state.history else last_terms,
        "history": state.history,
        "global_batch": global_batch,
        "peak_lr": peak_lr,
        "device": str(device),
        "world_size": D.world_size(),
        "stopped_by": stopped_by,
    }
    if bad_videos is not None:
        results["skipped_files"] = list(bad_videos.files)
    if hooks.on_end is not None and stopped_by is None:
        with D.gathered(raw_model) as full:
            if main:
                results.update(hooks.on_end(full, state))
    return results
