"""Stopping a run cleanly on SIGTERM / SIGUSR1 / Ctrl-C: the loop checkpoints at the next step boundary."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers: a scheduler's SIGTERM (SLURM preemption, ``timeout``) and a terminal's Ctrl-C reach
    the whole process group; the main process decides, and a worker that died of them would break a fetch."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _ignore(signum, frame) -> None:
    """A Python handler that does nothing (SIGCHLD once a stop is pending)."""


class StopFlag:
    """Set by SIGTERM / SIGUSR1 / SIGINT; the loop checkpoints at the next step boundary and returns.

    A second Ctrl-C (SIGINT) while the first is pending aborts at once, as Python does by default. Once a stop
    is pending, a DataLoader worker that dies (the signal reached it before it could ignore it, or the
    scheduler killed the group) must not end the run in the middle of a step: the loader's SIGCHLD handler,
    which raises wherever the main process is, is switched off, and :func:`until_stopped` ends the batches.
    """

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            if self.signal == signal.SIGINT:
                raise KeyboardInterrupt
            print(
                "\nCtrl-C: saving a checkpoint at the next step boundary (Ctrl-C again to abort without it)",
                file=sys.stderr,
                flush=True,
            )
        self.signal = signum
        # a no-op, not SIG_DFL: a SIGCHLD already pending when this runs would find no Python handler, and
        # CPython prints "Signal 17 ignored due to race condition" with a traceback
        signal.signal(signal.SIGCHLD, _ignore)

    @contextlib.contextmanager
    def installed(self):
        old = {}
        for sig in STOP_SIGNALS:
            try:
                old[sig] = signal.signal(sig, self)
            except ValueError:  # not the main thread: leave signals alone
                pass
        if old:  # a stop switches the loader's SIGCHLD handler off: it comes back with the others
            old[signal.SIGCHLD] = signal.getsignal(signal.SIGCHLD)
        try:
            yield self
        finally:
            for sig, handler in old.items():
                if handler is not None:  # None: set outside Python, cannot be put back
                    signal.signal(sig, handler)


def until_stopped(batches: Iterator, stop: StopFlag) -> Iterator:
    """The loader's batches. After a stop signal a loader error (its workers got the signal too) gives one
    None and ends them, so the run stops at this step boundary as the signal asked. A worker that dies while
    the main process receives its batch shows as the loader's RuntimeError or, mid-handover, as the shared
    memory socket's ConnectionResetError (an OSError) or EOFError."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (RuntimeError, OSError, EOFError):
            if stop.signal is None:
                raise
            yield None
            return
        yield batch
