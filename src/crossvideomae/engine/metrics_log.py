"""A run's ``metrics.jsonl`` and TensorBoard scalars, and the epoch's sums of the loss terms on the device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write


class MetricsLog:
    """metrics.jsonl (rank 0) + TensorBoard scalars when TensorBoard is installed.

    A run starting at ``start_step`` (the checkpoint's step on resume, else 0) first drops the records of
    later steps: the interrupted run logged them and they are about to be redone, so the log keeps one line
    per step. TensorBoard hides them too (``purge_step``).
    """

    def __init__(self, out_dir: Path, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.writer = None
        if enabled:
            self._keep_until(start_step)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_step + 1)
            except ImportError:
                print("TensorBoard is not installed: scalars go to metrics.jsonl only")

    def _keep_until(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):  # a torn last line of a killed run
                continue
        atomic_write(self.path, lambda f: f.write("".join(kept).encode()))

    def write(self, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{k}", v, record["step"])

    def image(self, tag: str, array: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, array, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class TermSums:
    """The sums of a step's named scalars (the loss terms) over an epoch's good steps, kept where the terms are:
    a step adds its terms stacked into one tensor with one in-place add, and nothing is read to the host until
    :meth:`tensors` is read (epoch ends, checkpoints), so the sums cost a step no synchronisation. ``sums`` and
    ``count``: a resumed epoch's sums so far (the checkpoint's ``epoch_sums``, ``epoch_good_steps``)."""

    def __init__(
        self, sums: dict[str, float] | None = None, count: int = 0, device: torch.device | None = None
    ):
        self.names: tuple[str, ...] = tuple(sums or {})
        values = list((sums or {}).values())
        self.total = torch.tensor(values, dtype=torch.float32, device=device) if values else torch.zeros(0)
        self.count = count

    def add(self, names: tuple[str, ...], values: torch.Tensor) -> None:
        """One step's ``values`` (float32, one per name of ``names``, in that order)."""
        if names == self.names:
            self.total += values
        else:  # the first step, or other terms than before: the sums re-keyed, new names after the old ones
            old = dict(zip(self.names, self.total.unbind(), strict=True))
            new = dict(zip(names, values.unbind(), strict=True))
            keys = (*self.names, *(k for k in names if k not in old))
            self.total = torch.stack([old.get(k, 0.0) + new[k] if k in new else old[k] for k in keys])
            self.names = keys
        self.count += 1

    def tensors(self) -> dict[str, torch.Tensor]:
        """The sums by name (0-d tensors where the terms were)."""
        return dict(zip(self.names, self.total.unbind(), strict=True))
