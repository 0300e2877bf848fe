"""A run's ``metrics.jsonl`` and TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
