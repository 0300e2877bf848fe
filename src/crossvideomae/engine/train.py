"""One training loop for every training task (pretraining, test-time adaptation, fine-tuning).

A task hands :func:`fit` a model, a ``loss_fn(model, batch) -> {name: scalar}`` with a ``"total"`` entry, a
dataset and a collate function. The loop owns the rest: device and DDP, a sampler that is a pure function of
(seed, epoch), per-sample random streams (so a resumed run sees exactly the samples and augmentations the
uninterrupted run would have), AdamW with warm-up + cosine per optimiser step, bf16 autocast on CUDA,
gradient accumulation and clipping, skipping of non-finite steps (the step itself: ``engine.step.TrainStep``),
checkpoints (atomic) every ``train.ckpt_every`` epochs (and every ``train.ckpt_every_steps`` steps when set), at the end and on SIGTERM /
SIGUSR1 / Ctrl-C, ``metrics.jsonl``, TensorBoard and a progress bar.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ..config import Config, ConfigError
from ..files import atomic_link
from . import distributed as D
from .checkpoint import (
    CheckpointError,
    RunState,
    checkpoint_state,
    load_resumable,
    rotate_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from .device import resolve_device
from .metrics_log import MetricsLog, TermSums
from .optim import lr_at, scaled_lr
from .prefetch import DeviceFeed
from .sampling import RunIndices, SeededItems
from .step import LossFn, build_step
from .stopping import StopFlag, ignore_stop_signals, until_stopped


class NonFiniteLossError(RuntimeError):
    """Too many consecutive optimiser steps had a non-finite loss or gradient."""


# ------------------------------------------------------------------------------------------------ the loop
@dataclass
class Hooks:
    """Optional task callbacks, called on rank 0 only."""

    on_epoch_end: Callable[[int, nn.Module, dict[str, Any], MetricsLog], None] | None = (
        None  # (epoch, model, last batch, log)
    )
    on_end: Callable[[nn.Module, RunState], dict[str, Any]] | None = None  # returns extra results


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
    inputs: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    clips_per_item: int = 1,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset``; returns the run's figures. ``repeat_batch`` > 1 takes that many
    optimiser steps on every batch (test-time adaptation). ``clips_per_item``: the clips one dataset item holds
    (``data.repeated_sampling``), counted in the global batch that scales the learning rate, as MAE-ST does.
    ``bad_videos`` (a ``BadVideoLog``) counts the files the dataset skipped and stops the run past its limit.
    ``inputs`` runs on every batch once it is on the device, with ``data.prefetch`` one step ahead on a side
    stream (the augmentation on the device; it must not draw from the global random streams, see
    :mod:`.prefetch`); ``prepare`` runs in the step, before the loss (outside a compiled graph: mixing, which
    draws from them). Hooks receive the batch after ``inputs``."""
    trainer = Trainer(
        cfg, model, loss_fn, dataset, out_dir, groups, repeat_batch, prepare, inputs, clips_per_item
    )
    if resume:
        trainer.resume()
    return trainer.run(collate, hooks or Hooks(), bad_videos)


class Trainer:
    """:func:`fit` in named phases: set-up (here), :meth:`resume`, :meth:`run` (the epochs), :meth:`take_step`
    (an optimiser step and its bookkeeping), :meth:`end_epoch`, :meth:`save`, :meth:`results`."""

    def __init__(
        self,
        cfg: Config,
        model: nn.Module,
        loss_fn: LossFn,
        dataset: Dataset,
        out_dir: Path,
        groups: list[dict] | None,
        repeat_batch: int,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None,
        inputs: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        clips_per_item: int = 1,
    ):
        self.cfg, self.out_dir, self.repeat_batch, self.inputs = cfg, out_dir, repeat_batch, inputs
        tc = cfg.train
        local_device = D.init_distributed(cfg.dist.backend)
        self.device = local_device or resolve_device(tc.device)
        self.main = D.is_main_process()
        torch.manual_seed(tc.seed + D.rank())  # masks and drop-path
        np.random.seed(tc.seed + D.rank())  # NumPy's stream: the cutmix box of aug.cutmix / eval.cutmix

        self.items = SeededItems(dataset, tc.seed)
        self.sampler = DistributedSampler(
            self.items, num_replicas=D.world_size(), rank=D.rank(), shuffle=True, seed=tc.seed, drop_last=True
        )
        bs, accum = cfg.data.batch_size, cfg.optim.accum_steps
        batches = len(self.sampler) // bs
        if tc.steps_per_epoch:
            if self.main and batches and tc.steps_per_epoch * accum > batches:
                print(f"train.steps_per_epoch={tc.steps_per_epoch} is more than one pass over the "
                      f"{len(self.items)} videos: an epoch is {batches // accum} step(s) of "
                      f"data.batch_size={bs} (raise train.epochs for more)")  # fmt: skip
            batches = min(batches, tc.steps_per_epoch * accum) if batches else 0
        if batches < accum:
            raise ConfigError(
                f"config key 'data.batch_size': {len(self.items)} videos make {batches} batches of "
                f"data.batch_size={bs} per process, fewer than optim.accum_steps={accum}: lower data.batch_size"
            )
        self.batches_per_epoch = batches
        self.steps_per_epoch = batches // accum * repeat_batch
        self.total_steps = self.steps_per_epoch * tc.epochs
        self.global_batch = bs * clips_per_item * accum * D.world_size()  # clips per optimiser step
        self.peak_lr = scaled_lr(cfg.optim, self.global_batch)
        self.warmup = round(cfg.optim.warmup_epochs * self.steps_per_epoch)
        self.step = build_step(cfg, model, loss_fn, self.device, self.peak_lr, groups=groups, prepare=prepare)
        self.raw_model, self.optimizer = model, self.step.optimizer
        self.state = RunState()
        # the current epoch's sums of the loss terms over its good steps (on the device) and their count
        self.sums = TermSums()
        self.micro = 0  # micro-steps taken in this epoch
        self.save_due = False  # train.ckpt_every_steps: a step checkpoint is written before the next step
        self.stopped_by: str | None = None
        self.last_terms: dict[str, float] = {}
        self.first_step: tuple[float, int] | None = None  # (time, step) after this process's first step
        # seconds between consecutive optimiser steps of one epoch (the last 1000), time.perf_counter at the same
        # point of each step (its finiteness check has returned and AdamW is launched): the training loop's
        # period, the step with its data wait and the loop's own work, without the checkpoint writes and
        # pictures between epochs. (bench's ms_per_step is one step on inputs already on the device, timed
        # between two device synchronisations; its ms_wall, the mean period of back-to-back steps, is the
        # figure defined as this one.)
        self.intervals: deque[float] = deque(maxlen=1000)
        self.last_step_at: float | None = None

    # -------------------------------------------------------------------------------------------- resume
    def resume(self) -> None:
        """Continue from the newest complete checkpoint in ``out_dir`` (mid-epoch included), if there is one."""
        path, ckpt, skipped = load_resumable(self.out_dir)
        if self.main:
            for reason in skipped:
                print(f"--resume: skipped {reason}")
        if ckpt is None:
            print(f"--resume: no checkpoint in {self.out_dir}, starting from scratch")
            return
        try:
            D.load_full_state(self.raw_model, self.optimizer, ckpt["model"], ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"{path}: does not fit the model and optimiser of this config "
                f"({' '.join(str(err).split())[:300]}); resume with the run's config (its config.yaml)"
            ) from None
        state = RunState(
            ckpt["epoch"], ckpt["step"], ckpt["batch_in_epoch"], ckpt["bad_steps"], 0, ckpt["history"]
        )
        state.epoch_sums, state.epoch_good_steps = ckpt.get("epoch_sums", {}), ckpt.get("epoch_good_steps", 0)
        bs, accum, world = self.cfg.data.batch_size, self.cfg.optim.accum_steps, D.world_size()
        old = (
            ckpt["config"]["data"]["batch_size"],
            ckpt["config"]["optim"]["accum_steps"],
            int(ckpt.get("world_size", 1)),
        )
        if world == old[2]:  # other world sizes: fresh streams
            set_rng_state(ckpt["rng"])
        if old != (bs, accum, world):  # same place in the epoch's samples, in this run's batches
            state.batch_in_epoch = D.global_batches_done(state.batch_in_epoch, old[0], old[2], bs, world)
            state.step = (
                state.epoch * self.steps_per_epoch + state.batch_in_epoch // accum * self.repeat_batch
            )
        self.state = state
        if self.main:
            print(f"resumed from {path}: epoch {state.epoch}, step {state.step}")

    # -------------------------------------------------------------------------------------------- save
    def save(self, name: str) -> None:
        """``checkpoint_state`` to ``out_dir/name`` (atomically, from rank 0; under FSDP a collective)."""
        self.feed.settle()  # a batch prepared on its thread forks the random state the checkpoint reads
        # the epoch's running sums as the mean over ranks: a resume inside the epoch continues them on every
        # rank, and the mean over ranks of (that + each rank's later sums) is the uninterrupted epoch mean
        self.state.epoch_sums = D.mean_over_ranks(self.sums.tensors())
        self.state.epoch_good_steps = self.sums.count
        model_sd, optim_sd = D.full_state(self.raw_model, self.optimizer)  # gathered onto rank 0 under FSDP
        if self.main:
            ckpt = checkpoint_state(self.cfg, self.raw_model, self.optimizer, self.state)
            ckpt["model"], ckpt["optimizer"] = model_sd, optim_sd
            ckpt["world_size"] = D.world_size()
            save_checkpoint(self.out_dir / name, ckpt)

    # -------------------------------------------------------------------------------------------- the run
    def run(self, collate: Callable, hooks: Hooks, bad_videos: Any | None) -> dict[str, Any]:
        """The epochs from where the state stands, then :meth:`results`."""
        cfg, tc, state, out_dir = self.cfg, self.cfg.train, self.state, self.out_dir
        bs = cfg.data.batch_size
        if self.main:  # temporary files of checkpoint writes that a kill -9 interrupted
            for tmp in out_dir.glob(".checkpoint-*.pth.*.tmp"):
                tmp.unlink(missing_ok=True)
        self.log = MetricsLog(out_dir, self.main, start_step=state.step)
        stop = StopFlag()
        self.t0 = time.perf_counter()
        loader = DataLoader(
            self.items,
            batch_size=bs,
            sampler=RunIndices(
                self.sampler, state.epoch, state.batch_in_epoch * bs, tc.epochs, self.batches_per_epoch * bs
            ),
            collate_fn=collate,
            num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            worker_init_fn=ignore_stop_signals,
            # its own stream for the workers' base seed: drawing it from the global one would make a resumed run
            # draw other masks than the uninterrupted run (the items have their own streams, see SeededItems)
            generator=torch.Generator().manual_seed(tc.seed),
        )
        batches = iter(loader)
        self.feed = DeviceFeed(
            until_stopped(batches, stop),
            self.device,
            self.inputs,
            cfg.data.prefetch,
            cfg.data.prefetch_thread,
        )
        with stop.installed():
            while state.epoch < tc.epochs and self.stopped_by is None:
                skip = state.batch_in_epoch
                self.sums = (
                    TermSums(state.epoch_sums, state.epoch_good_steps, self.device) if skip else TermSums()
                )
                quiet = {} if self.main else {"disable": True}  # rank 0 leaves it to tqdm (and TQDM_DISABLE)
                self.bar = tqdm(
                    total=self.batches_per_epoch,
                    initial=skip,
                    desc=f"epoch {state.epoch}",
                    leave=False,
                    dynamic_ncols=True,
                    **quiet,
                )
                last_batch = None
                self.micro = 0
                for batch in itertools.islice(self.feed, max(0, self.batches_per_epoch - skip)):
                    if D.any_rank(
                        stop.signal is not None
                    ):  # before a step: one in the last step ends the epoch
                        self.stopped_by = (
                            signal.Signals(stop.signal).name if stop.signal else "a signal to another rank"
                        )
                        break
                    if self.save_due:  # where a SIGTERM would save: between steps, before this batch's step
                        self.save("checkpoint-last.pth")
                        self.save_due = False
                    if bad_videos is not None:
                        bad_videos.update(batch.get("skipped", []))
                        bad_videos.check(len(self.items))
                    last_batch = batch
                    for _ in range(self.repeat_batch):
                        self.take_step(last_batch)
                    state.batch_in_epoch += 1
                    self.bar.update(1)
                self.bar.close()
                self.last_step_at = None  # the next epoch's first interval would include this epoch's end
                if self.stopped_by is not None:
                    self.save("checkpoint-last.pth")
                    if self.main:
                        print(
                            f"{self.stopped_by}: checkpoint saved at step {state.step}; continue with --resume"
                        )
                    break
                self.end_epoch(hooks, last_batch)
        self.feed.close()
        del self.feed, batches  # stops the loader's workers
        self.log.close()
        results = self.results()
        if bad_videos is not None:
            results["skipped_files"] = list(bad_videos.files)
        if hooks.on_end is not None and self.stopped_by is None:
            with D.gathered(self.raw_model) as full:
                if self.main:
                    results.update(hooks.on_end(full, state))
        return results

    def take_step(self, batch: dict[str, Any]) -> None:
        """One micro-step of ``batch``; on the last of ``optim.accum_steps``, the optimiser step (or its skip when
        not finite), the step's timing, the epoch sums and ``metrics.jsonl``.

        The host waits for the device once per optimiser step, as ``bench``'s step does: the finiteness check.
        Before it, the next batch is fetched and its copy and ``inputs`` queued beside this step
        (:class:`DeviceFeed`).
        The loss terms stay on the device (stacked, summed there); a log step's terms and gradient norm come
        back in that same check's transfer (``TrainStep.update_and_read``)."""
        state, tc, cfg = self.state, self.cfg.train, self.cfg
        self.micro += 1
        sync = self.micro % cfg.optim.accum_steps == 0
        terms = self.step.backward(batch, sync)
        self.feed.advance()  # the next batch's copy and inputs, queued beside this step's work
        if not sync:
            return
        lr = lr_at(state.step, self.total_steps, self.warmup, self.peak_lr, cfg.optim.min_lr)
        log = (state.step + 1) % tc.log_every == 0 or state.step == 0
        names = tuple(terms)
        values = torch.stack([v.detach().reshape(()) for v in terms.values()]).float()
        read = D.ranks_mean(values) if log else None  # the global batch's terms
        ok, _, logged = self.step.update_and_read(terms["total"], lr, read)
        if ok:
            state.consecutive_bad = 0
        else:
            state.bad_steps += 1
            state.consecutive_bad += 1
        state.step += 1
        self.save_due = self.save_due or (tc.ckpt_every_steps > 0 and state.step % tc.ckpt_every_steps == 0)
        now = time.perf_counter()
        if self.first_step is None:
            self.first_step = (now, state.step)
        elif self.last_step_at is not None:
            self.intervals.append(now - self.last_step_at)
        self.last_step_at = now
        if ok:
            self.sums.add(names, values)
        if not ok and state.consecutive_bad >= tc.max_bad_steps:
            self.save("checkpoint-last.pth")
            bad = dict(zip(names, values.tolist(), strict=True))
            raise NonFiniteLossError(
                f"{state.consecutive_bad} consecutive non-finite steps, the last at step {state.step} "
                f"(epoch {state.epoch}); loss terms {bad}; checkpoint saved to "
                f"{self.out_dir / 'checkpoint-last.pth'}"
            )
        if log:
            grad_norm, *means = logged
            self.last_terms = dict(zip(names, means, strict=True))
            record = {
                "step": state.step,
                "epoch": state.epoch,
                "lr": self.optimizer.param_groups[0]["lr"],
                **self.last_terms,
            }
            record["grad_norm"] = grad_norm
            record["bad_steps"] = state.bad_steps
            self.log.write(record)
            self.bar.set_postfix(loss=f"{self.last_terms['total']:.4f}", lr=f"{record['lr']:.2e}")

    def end_epoch(self, hooks: Hooks, last_batch: dict[str, Any] | None) -> None:
        """The epoch's mean terms into the history, the task's hook, the epoch checkpoint."""
        state, tc = self.state, self.cfg.train
        self.feed.settle()  # the hook may draw from the random streams that a thread's batch forks
        epoch = state.epoch
        means = {k: v / max(self.sums.count, 1) for k, v in D.mean_over_ranks(self.sums.tensors()).items()}
        state.history.append({"epoch": epoch, **means})
        state.epoch += 1
        state.batch_in_epoch = 0
        if self.main:
            summary = " ".join(f"{k}={v:.4f}" for k, v in means.items())
            print(f"epoch {epoch}: {summary}")
        if hooks.on_epoch_end is not None and last_batch is not None:
            with D.gathered(self.raw_model) as full:  # under FSDP a collective, the full model on rank 0
                if self.main:
                    hooks.on_epoch_end(epoch, full, last_batch, self.log)
        if state.epoch % tc.ckpt_every == 0 or state.epoch == tc.epochs:
            self.save(f"checkpoint-{state.epoch}.pth")
            self.save_due = False
            if self.main:  # the same state: a second name for the file, not a second write (or FSDP gather)
                last = self.out_dir / "checkpoint-last.pth"
                atomic_link(self.out_dir / f"checkpoint-{state.epoch}.pth", last)
                rotate_checkpoints(self.out_dir, tc.keep_checkpoints)
        D.barrier()

    def results(self) -> dict[str, Any]:
        state, end, first = self.state, time.perf_counter(), self.first_step
        return {
            "epochs": state.epoch,
            "steps": state.step,
            "bad_steps": state.bad_steps,
            "wall_time_s": round(end - self.t0, 1),
            # after the first step, data loading and checkpoint writes included
            "s_per_step": (
                round((end - first[0]) / (state.step - first[1]), 4)
                if first and state.step > first[1]
                else None
            ),
            "step_time_median_s": round(float(np.median(self.intervals)), 4) if self.intervals else None,
            "peak_memory_gib": (
                round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
                if self.device.type == "cuda"
                else None
            ),
            "final_terms": state.history[-1] if state.history else self.last_terms,
            "history": state.history,
            "global_batch": self.global_batch,
            "peak_lr": self.peak_lr,
            "device": str(self.device),
            "world_size": D.world_size(),
            "stopped_by": self.stopped_by,
        }
