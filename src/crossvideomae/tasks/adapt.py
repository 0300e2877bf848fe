"""``crossvideomae adapt``: test-time adaptation (paper §4.4).

From given weights (``init.model``, or ``init.video`` + ``init.image``), take ``adapt.updates_per_batch``
(default 20) gradient updates with the pretraining loss on every batch of the target data, then save the
adapted weights. One pass over the data (or ``adapt.num_batches`` batches); no warm-up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..config import Config
from .pretrain import run_pretraining


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    if not (cfg.init.model or cfg.init.video or cfg.init.image):
        raise SystemExit(
            "crossvideomae adapt: give the weights to adapt: init.model=PATH or init.video=PATH init.image=PATH"
        )
    train = dataclasses.replace(cfg.train, epochs=1, steps_per_epoch=cfg.adapt.num_batches)
    optim = dataclasses.replace(cfg.optim, warmup_epochs=0.0)
    cfg = dataclasses.replace(cfg, train=train, optim=optim)
    results = run_pretraining(cfg, out_dir, resume=args.resume, repeat_batch=cfg.adapt.updates_per_batch)
    results["updates_per_batch"] = cfg.adapt.updates_per_batch
    return results
