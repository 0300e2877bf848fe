"""Host synchronisations per training step: ``pretrain`` (``fit``'s loop) waits for the device as often per optimiser
step as ``bench``'s timed step does, log steps included: once, the step's finiteness check.

On the CPU nothing waits, so the reads that would wait for a GPU are counted where the package makes them: every
``Tensor.item`` / ``tolist`` / ``cpu`` / ``numpy`` / ``__float__`` / ``__int__`` / ``__bool__`` / ``__index__``
called from crossvideomae's own code (torch's CPU optimiser reads its step counters with ``item``, which the fused
CUDA AdamW does not; those are left out, the same for both)."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import TINY

from crossvideomae.cli import main
from crossvideomae.config import load_config
from crossvideomae.engine.train import Trainer
from crossvideomae.perf import measure
from crossvideomae.tasks.pretrain import pretrain_step, random_batch

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
RUN = [
    *TINY,
    "data.source=synthetic",
    "data.batch_size=4",
    "data.num_workers=0",
    "train.epochs=1",
    "train.steps_per_epoch=4",
    "train.log_every=3",  # steps 1 and 3 are log steps, 2 and 4 are not
    "optim.warmup_epochs=0",
    "optim.clip_grad=1.0",
    "train.viz_every=0",
]


class HostReads:
    """Counts the tensor reads made by crossvideomae code while installed."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name)))

    def _counted(self, read):
        def counted(tensor, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("crossvideomae"):
                self.count += 1
            return read(tensor, *args, **kwargs)

        return counted

    def per_call(self, fn, calls: list[int]):
        """``fn`` that appends the reads of each of its calls to ``calls``."""

        def wrapped(*args, **kwargs):
            before = self.count
            try:
                return fn(*args, **kwargs)
            finally:
                calls.append(self.count - before)

        return wrapped


def test_pretrain_waits_for_the_device_once_per_step_as_bench_does(tmp_path, monkeypatch):
    reads = HostReads(monkeypatch)

    cfg = load_config(None, RUN)
    torch.manual_seed(cfg.train.seed)
    step = pretrain_step(cfg, torch.device("cpu"))  # bench's step
    batches = [random_batch(cfg, "cpu"), random_batch(cfg, "cpu")]
    bench: list[int] = []
    measure(reads.per_call(step, bench), batches, warmup=1, steps=2, device=torch.device("cpu"))
    assert len(bench) >= 3 and set(bench) == {1}  # the finiteness check

    steps: list[int] = []
    monkeypatch.setattr(Trainer, "take_step", reads.per_call(Trainer.take_step, steps))
    res = main(["pretrain", "-o", str(tmp_path), *RUN])
    assert res["steps"] == 4 and res["bad_steps"] == 0
    assert steps == bench[:1] * 4  # log steps too: their terms and gradient norm come with the check


def test_seeded_items_seed_the_host_streams_per_item_and_save_them_once_per_batch(monkeypatch):
    """The loop's other per-step host work is the batch's items (made in the training process with
    ``data.num_workers=0``, ``data.source=synthetic`` included): each item still draws from its own streams,
    seeded as before, but the caller's streams are saved and put back once per batch, and no device
    generator is reseeded (``torch.manual_seed`` reseeds CUDA's, and formats a stack trace per device kind)."""
    import random
    import zlib

    import numpy as np
    from torch.utils.data import DataLoader, Dataset

    from crossvideomae.engine.sampling import SeededItems

    class Draws(Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, index: int) -> tuple[float, float, float]:
            return random.random(), float(np.random.rand()), float(torch.rand(()))

    def expected(epoch: int, index: int) -> tuple[float, float, float]:
        s = zlib.crc32(f"5/{epoch}/{index}".encode())
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        return Draws()[index]

    keys = [(1, i) for i in (3, 0, 7, 3, 9)]
    want = [expected(*k) for k in keys]
    items = SeededItems(Draws(), seed=5)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    caller = random.random(), float(np.random.rand()), float(torch.rand(()))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)

    saves = []
    get_state = np.random.get_state
    monkeypatch.setattr(np.random, "get_state", lambda *a: (saves.append(1), get_state(*a))[1])
    monkeypatch.setattr(torch, "manual_seed", lambda seed: pytest.fail("a device generator was reseeded"))
    own = torch.Generator().manual_seed(
        0
    )  # as fit's: the loader's base seed is not drawn from the caller's stream
    loader = DataLoader(items, batch_size=5, sampler=keys, collate_fn=list, generator=own)
    assert [x for batch in loader for x in batch] == want  # the DataLoader takes __getitems__
    assert len(saves) == 1
    assert items[keys[2]] == want[2]
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == caller  # streams put back
