"""Bookkeeping of videos that failed to decode during a run.

The datasets replace a failed video by another one and report it in the item's ``skipped`` list of
``(path, reason)`` pairs (the fields of its :class:`~crossvideomae.data.decode.DecodeError`, so a path may
hold any character). The training loop feeds every batch's list to :meth:`BadVideoLog.update` and calls
:meth:`BadVideoLog.check`, the evaluation commands do so after each pass over a split, so that a run on a badly
broken dataset stops with the list of files instead of silently using a fraction of it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class TooManyBadVideos(RuntimeError):
    """More than ``data.max_bad_fraction`` of the dataset failed to decode; the message lists the files."""


class BadVideoLog:
    def __init__(self, max_fraction: float = 0.01, what: str = "video"):
        self.max_fraction, self.what = max_fraction, what  # what the files are, for the messages
        self.reasons: dict[str, str] = {}  # path -> first reason seen
        self.count = 0  # failures including repeats of the same file

    def update(self, skipped: list[tuple[str, str]]) -> None:
        for path, reason in skipped:
            self.count += 1
            if path not in self.reasons:
                self.reasons[path] = reason
                log.warning("skipped a %s that failed to decode: %s: %s", self.what, path, reason)

    @property
    def files(self) -> list[str]:
        """``"path: reason"`` per distinct bad file, for results.json."""
        return [f"{p}: {r}" for p, r in self.reasons.items()]

    def check(self, dataset_size: int) -> None:
        if len(self.reasons) > self.max_fraction * dataset_size:
            listing = "\n  ".join(self.files)
            raise TooManyBadVideos(
                f"{len(self.reasons)} of {dataset_size} {self.what}s failed to decode, more than "
                f"data.max_bad_fraction={self.max_fraction}:\n  {listing}"
            )
