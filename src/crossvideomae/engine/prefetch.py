"""A loader's batches on the training device, made ready one step ahead (``data.prefetch``).

Every optimiser step ends with one host synchronisation (the finiteness check), so a loop that fetches,
copies and augments a batch after it leaves the device idle for all of that host work, and then runs the
augmentation before the step on the same stream. :class:`DeviceFeed` lets the loop start the next batch's
work as soon as the current step is queued (:meth:`DeviceFeed.advance`, called between backward and the
optimiser's synchronisation): its host-to-device copy and ``inputs`` (the augmentation on the device) are
queued on a side CUDA stream and run beside the step; the step that takes the batch waits for that stream
first. On a CPU the next batch is prepared at the same point, with nothing to overlap (the same order of
work as on a GPU, which the CPU tests check); with ``ahead=False`` each batch is copied and prepared when it
is taken.

With ``thread=True`` (``data.prefetch_thread``) that work runs on a thread of its own: ``advance`` only hands
it over, so the host launches the optimiser's step and waits for the device while the next batch is fetched,
decoded and augmented (PyTorch releases the GIL inside its operators). The batch is taken, and the thread
joined, before the next step's ``prepare`` (which may draw from the global random streams) and before a
checkpoint reads the random state (:meth:`DeviceFeed.settle`): ``inputs`` forks the global CPU stream while
it draws, and nothing else may use it meanwhile. Measured on an H100, it does not shorten the step: the
preparation is mostly Python and launches, which hold the GIL either way (docs/PERFORMANCE.md).

A batch fetched ahead but not yet taken when the run stops or writes a checkpoint is not counted, so
``--resume`` fetches it again. ``inputs`` must therefore not draw from the global random streams
(``DeviceAugment`` draws inside its own forked, per-step seeded state): the checkpoint would hold the state
after its draws for a batch that the resumed run prepares again, and the resumed run would no longer repeat
the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

Batch = dict[str, Any]
_END = object()  # the loader is exhausted
_NONE_AHEAD = object()  # nothing fetched ahead


def to_device(batch: Batch, device: torch.device) -> Batch:
    """A batch's top-level tensors on ``device`` (non-blocking from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class DeviceFeed:
    """``batches`` (host batches, or None: a stop marker, passed on as it is) -> batches on ``device`` through
    ``inputs``; with ``ahead``, one of them prepared ahead (on a CUDA device, on a side stream), with ``thread``
    on a thread of its own."""

    def __init__(
        self,
        batches: Iterator[Batch | None],
        device: torch.device,
        inputs: Callable[[Batch], Batch] | None = None,
        ahead: bool = True,
        thread: bool = False,
    ):
        self.batches, self.device = batches, device
        self.inputs = inputs or (lambda batch: batch)
        self.prepare_ahead = ahead
        self.stream = torch.cuda.Stream(device) if ahead and device.type == "cuda" else None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if ahead and thread else None
        self.ahead: Any = _NONE_AHEAD

    def _load(self) -> Any:
        try:
            batch = next(self.batches)
        except StopIteration:
            return _END
        if batch is None:
            return None
        # "prepare": a range of its own in a profile (bench --loader --profile)
        with torch.cuda.stream(self.stream), torch.profiler.record_function("prepare"):
            return self.inputs(to_device(batch, self.device))

    def advance(self) -> None:
        """Fetch the next batch and queue its copy and ``inputs`` (on CUDA, on the side stream), if not done yet;
        with ``thread``, start that on the thread and return; a no-op with ``ahead=False``."""
        if self.prepare_ahead and self.ahead is _NONE_AHEAD:
            self.ahead = self.pool.submit(self._load) if self.pool is not None else self._load()

    def settle(self) -> None:
        """Wait for the batch being prepared on the thread, if any (its errors are raised here)."""
        if isinstance(self.ahead, Future):
            future, self.ahead = self.ahead, _NONE_AHEAD  # raised once
            self.ahead = future.result()

    def close(self) -> None:
        """Settle, and end the thread."""
        self.settle()
        if self.pool is not None:
            self.pool.shutdown()

    def __iter__(self) -> DeviceFeed:
        return self

    def __next__(self) -> Batch | None:
        self.settle()
        batch, self.ahead = (self._load() if self.ahead is _NONE_AHEAD else self.ahead), _NONE_AHEAD
        if batch is _END:
            raise StopIteration
        if self.stream is not None and batch is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for v in batch.values():  # made on the side stream, used on this one: not to be freed early
                if torch.is_tensor(v) and v.is_cuda:
                    v.record_stream(current)
        return batch
