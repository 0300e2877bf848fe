"""Loss curves from a run's ``metrics.jsonl`` (one JSON dict per logged step)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .png import save_png

# Keys that are the x axis or bookkeeping, not curves.
AXES = ("step", "epoch")


def read_metrics(path: Path) -> list[dict]:
    """Every complete JSON line of ``path``; a torn last line (a run killed mid-write) is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def curve_keys(rows: list[dict]) -> list[str]:
    """Numeric keys in order of first appearance, ``total`` first and ``lr`` last."""
    keys: dict[str, None] = {}
    for row in rows:
        for k, v in row.items():
            if k not in AXES and isinstance(v, (int, float)) and not isinstance(v, bool):
                keys[k] = None
    order = list(keys)
    return sorted(order, key=lambda k: (k != "total", k == "lr", order.index(k)))


def plot_losses(metrics_jsonl: Path, out_png: Path, compact: bool = False) -> Path:
    """One panel per logged term (and the learning rate) over steps; writes ``out_png`` (see :func:`save_png`
    for ``compact``) and returns it."""
    rows = read_metrics(metrics_jsonl)
    keys = curve_keys(rows)
    if not keys:
        raise ValueError(f"{metrics_jsonl}: no numeric terms to plot")
    cols = min(3, len(keys))
    n_rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * n_rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(n_rows, cols, squeeze=False).flat)
    for ax, key in zip(axes, keys, strict=False):  # fewer keys than panels
        points = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, lw=1.2)  # NaN / inf show as gaps
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)  # panels left over in the last row
    fig.tight_layout()
    fig.canvas.draw()
    return save_png(np.asarray(fig.canvas.buffer_rgba())[..., :3], out_png, compact)
