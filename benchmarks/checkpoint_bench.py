"""What an epoch-end checkpoint costs: the full training state of a preset's model (weights, AdamW moments,
config, RNG) written as ``checkpoint-N.pth`` and ``checkpoint-last.pth``, the way ``fit`` did before
(two atomic writes of the same state) and the way it does now (one write, then ``atomic_link``).

    python benchmarks/checkpoint_bench.py OUT_DIR [PRESET]     (default preset vitb_k400; needs ~2 x its size free)

Writes OUT_DIR/checkpoint_bench.json; the checkpoint files are deleted at the end.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from crossvideomae import perf
from crossvideomae.config import load_config
from crossvideomae.engine.checkpoint import RunState, checkpoint_state, save_checkpoint
from crossvideomae.engine.optim import build_adamw, param_groups
from crossvideomae.files import atomic_link
from crossvideomae.models import build_model


def main() -> None:
    out = Path(sys.argv[1])
    preset = sys.argv[2] if len(sys.argv) > 2 else "vitb_k400"
    runs = out / "ckpt"
    runs.mkdir(parents=True, exist_ok=True)
    cfg = load_config(preset, ["train.device=cpu"])
    model = build_model(cfg)
    optimizer = build_adamw(param_groups(model, cfg.optim.weight_decay), 1e-4, cfg.optim, torch.device("cpu"))
    for p in model.parameters():  # one step, so that the AdamW moments exist
        p.grad = torch.zeros_like(p)
    optimizer.step()
    state = checkpoint_state(cfg, model, optimizer, RunState(epoch=1, step=1))

    def timed(fn) -> float:  # seconds of one call (after the Timer's two untimed calls)
        return perf.time_calls(fn, 1)[0] / 1e3

    res: dict = {"preset": preset, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    res["two_writes_s"] = timed(
        lambda: (
            save_checkpoint(runs / "checkpoint-1.pth", state),
            save_checkpoint(runs / "checkpoint-last.pth", state),
        )
    )
    res["file_gib"] = (runs / "checkpoint-1.pth").stat().st_size / 2**30
    res["write_and_link_s"] = timed(
        lambda: (
            save_checkpoint(runs / "checkpoint-2.pth", state),
            atomic_link(runs / "checkpoint-2.pth", runs / "checkpoint-last.pth"),
        )
    )
    shutil.rmtree(runs)
    (out / "checkpoint_bench.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
