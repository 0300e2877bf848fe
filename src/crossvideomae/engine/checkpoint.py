"""Checkpoint files: atomic writes, loading that never executes pickled code, finding the newest one.

A checkpoint is a ``torch.save`` file of plain containers, tensors and numbers, so ``torch.load(...,
weights_only=True)`` reads it. Writes go to a temporary file in the same folder, are flushed and fsync'ed,
then renamed over the target: a crash or a full disk leaves the previous file intact.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read safely or does not fit; the message names the file."""


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (torch pickle with weights_only=True, or safetensors) without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device=str(map_location))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled objects other than tensors and plain containers, "
            f"which could run code ({str(err).splitlines()[0]}). Re-save it as a state dict or safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0]})") from None


_EPOCH = re.compile(r"checkpoint-(\d+)\.pth$")


def epoch_checkpoints(run_dir: str | Path) -> list[Path]:
    """``checkpoint-<epoch>.pth`` files of a run, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint-*.pth") if (m := _EPOCH.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Newest complete checkpoint of a run: ``checkpoint-last.pth`` or the highest epoch that loads."""
    candidates = [Path(run_dir) / "checkpoint-last.pth", *reversed(epoch_checkpoints(run_dir))]
    best, best_step = None, -1
    for p in candidates:
        if not p.is_file():
            continue
        try:
            step = int(load_checkpoint(p).get("step", -1))
        except CheckpointError:
            continue  # an incomplete or damaged file: fall back to an older one
        if step > best_step:
            best, best_step = p, step
    return best
