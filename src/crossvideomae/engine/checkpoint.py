"""Run checkpoints: atomic saves, loading that never executes pickled code, finding the newest one that loads
(resume) and rotation; the state of every random stream that a checkpoint stores.

A checkpoint is a ``torch.save`` file of plain containers, tensors and numbers, so ``torch.load(...,
weights_only=True)`` reads it. Saves are atomic (:func:`crossvideomae.files.atomic_write`): a crash or a full
disk leaves the previous file intact. Weights in other layouts, loading into modules and exports are
:mod:`crossvideomae.weights`'.
"""

from __future__ import annotations

import argparse
import pickle
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..config import Config, to_dict
from ..files import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read safely or does not fit; the message names the file."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


_np_core = getattr(np, "_core", None) or np.core
# Harmless classes that research checkpoints carry beside the weights (MAE and VideoMAE store their argparse
# options; numpy scalars appear in saved metrics). Building them runs no user code.
_BENIGN_GLOBALS = [
    argparse.Namespace,
    np.dtype,
    _np_core.multiarray.scalar,
    (_np_core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    *{type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")},
]


def _torch_load(path: Path, map_location: str | torch.device, mmap: bool = False) -> Any:
    with torch.serialization.safe_globals(_BENIGN_GLOBALS):
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


def _unsafe_globals(path: Path, err: Exception) -> str:
    """The classes / functions a refused pickle wanted to call (found without unpickling), for the message."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        found = []
    return ", ".join(found) if found else str(err).splitlines()[0]


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Read a checkpoint (torch pickle with weights_only=True, or safetensors) without running pickled code.
    ``mmap``: map a torch file's tensors instead of reading them (only its small pickled header is read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location))
        except Exception as err:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})"
            ) from None
    try:
        return _torch_load(path, map_location, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled objects other than tensors and plain containers, "
            f"which could run code ({_unsafe_globals(path, err)}). Re-save it as a state dict or safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0]})") from None
    except Exception as err:  # on garbage the weights-only unpickler also raises KeyError, IndexError...
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__} while unpickling)"
        ) from None


_EPOCH = re.compile(r"checkpoint-(\d+)\.pth$")


def epoch_checkpoints(run_dir: str | Path) -> list[Path]:
    """``checkpoint-<epoch>.pth`` files of a run, oldest first."""
    found = [
        (int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint-*.pth") if (m := _EPOCH.search(p.name))
    ]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: Path) -> int:
    """The optimiser step a checkpoint holds. The file is memory-mapped, so only its small pickled header is
    read: a truncated file has lost the zip directory at its end and fails to open (:class:`CheckpointError`)."""
    return int(load_checkpoint(path, mmap=True).get("step", -1))


def _by_step(run_dir: str | Path) -> tuple[list[Path], list[str]]:
    """A run's checkpoints whose header loads, the most steps first (``checkpoint-last.pth`` first among
    equals), and the reasons of those that do not load."""
    found, refused = [], []
    for p in [Path(run_dir) / "checkpoint-last.pth", *reversed(epoch_checkpoints(run_dir))]:
        if p.is_file():
            try:
                found.append((checkpoint_step(p), p))
            except CheckpointError as err:
                refused.append(str(err))
    return [p for _, p in sorted(found, key=lambda sp: -sp[0])], refused


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Newest complete checkpoint of a run: ``checkpoint-last.pth`` or the highest epoch whose header loads."""
    return next(iter(_by_step(run_dir)[0]), None)


def load_resumable(run_dir: str | Path) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The newest checkpoint of a run that loads, read; and why each one that does not load was skipped.

    (None, None, []) when the run has no checkpoint. Raises :class:`CheckpointError` naming every file and its
    reason when there are checkpoints and none of them loads: a resume must never start over silently.
    """
    newest_first, skipped = _by_step(run_dir)
    for path in newest_first:
        try:
            return path, load_checkpoint(path), skipped
        except CheckpointError as err:  # the header loaded, the tensors did not
            skipped.append(str(err))
    if skipped:
        raise CheckpointError(
            f"--resume: no checkpoint in {run_dir} loads (the run's files are left as they are): "
            + "; ".join(skipped)
        )
    return None, None, []


def rotate_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` epoch checkpoints holding the most steps; files that do not load count as
    the oldest, so the newest good checkpoint is never the one deleted."""
    ranked = []
    for i, p in enumerate(epoch_checkpoints(run_dir)):
        try:
            ranked.append((checkpoint_step(p), i, p))
        except CheckpointError:
            ranked.append((-1, i, p))
    for *_, p in sorted(ranked)[:-keep]:
        p.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """Every random stream, as tensors and plain values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ a run's state
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


def checkpoint_state(
    cfg: Config, model: nn.Module, optimizer: torch.optim.Optimizer, state: RunState
) -> dict[str, Any]:
    """What a run checkpoint holds: weights, optimiser, config, the loop's place and sums, every RNG stream."""
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
