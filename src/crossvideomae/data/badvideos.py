"""Bookkeeping of videos that failed to decode during a run.

The datasets replace a failed video by another one and report it in the item's ``skipped`` list
(``"path: reason"``). The training loop feeds every batch's list to :meth:`BadVideoLog.update` and calls
:meth:`BadVideoLog.check` so that a run on a badly broken dataset stops with the list of files instead of
silently training on a fraction of it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class TooManyBadVideos(RuntimeError):
    """More than ``data.max_bad_fraction`` of the dataset failed to decode; the message lists the files."""


class BadVideoLog:
    def __init__(self, max_fraction: float = 0.01):
        self.max_fraction = max_fraction
        self.reasons: dict[str, str] = {}  # path -> first reason seen
        self.count = 0  # failures including repeats of the same file

    def update(self, skipped: list[str]) -> None:
        for entry in skipped:
            path, _, reason = entry.partition(": ")
            self.count += 1
            if path not in self.reasons:
                self.reasons[path] = reason
                log.warning("skipped a video that failed to decode: %s", entry)

    @property
    def files(self) -> list[str]:
        """``"path: reason"`` per distinct bad file, for results.json."""
        return [f"{p}: {r}" for p, r in self.reasons.items()]

    def check(self, dataset_size: int) -> None:
        if len(self.reasons) > self.max_fraction * dataset_size:
            listing = "\n  ".join(self.files)
            raise TooManyBadVideos(
                f"{len(self.reasons)} of {dataset_size} videos failed to decode, more than "
                f"data.max_bad_fraction={self.max_fraction}:\n  {listing}"
            )
