"""The built-in synthetic dataset: H.264 mp4 clips whose label can only be read from the order of frames.

Each video shows a static textured background and one or more objects (a kind of shape, a colour, a darker
stripe that makes its orientation visible) that all move the same way. The motion class comes in pairs that
are each other's time reversal (left / right, up / down, cw / ccw, grow / shrink, two diagonals in both
directions), so a single frame or an unordered bag of frames says nothing about the class. Objects are large
(a fifth to a third of the frame) and move several pixels per frame so that a tiny model can learn the
classes in a few CPU minutes; backgrounds, kinds, colours, speeds and start positions vary per video.
Optional realism (``synth.camera_jitter``, ``synth.noise``): a hand-held camera that shifts the whole frame by a
few pixels from frame to frame, and per-pixel sensor noise, so that no pixel stays constant over time.

Layout written into ``out_dir`` (a class-per-folder tree, so ``crossvideomae prepare folder`` reads it too)::

    train/<class>/<00042>.mp4   val/<class>/<00007>.mp4
    train.txt  val.txt              `path label` lines, paths relative to out_dir (the list's folder)
    train_kinds.txt  val_kinds.txt  `path kind` sidecars: the object-kind label of each video
    label_map.json                  {"classes": [...], "kinds": [...]}

Everything is a pure function of ``SynthConfig.seed`` (and the video's split and number), so two runs with the
same config write byte-identical files.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import av
import numpy as np

from ..config import SynthConfig

# (name, dx, dy, rotation sign, scale sign): unit velocity, rotation direction and size change per class.
MOTIONS: tuple[tuple[str, float, float, int, int], ...] = (
    ("move_right", 1, 0, 0, 0),
    ("move_left", -1, 0, 0, 0),
    ("move_down", 0, 1, 0, 0),
    ("move_up", 0, -1, 0, 0),
    ("move_down_right", 1, 1, 0, 0),
    ("move_up_left", -1, -1, 0, 0),
    ("move_up_right", 1, -1, 0, 0),
    ("move_down_left", -1, 1, 0, 0),
    ("rotate_cw", 0, 0, 1, 0),
    ("rotate_ccw", 0, 0, -1, 0),
    ("grow", 0, 0, 0, 1),
    ("shrink", 0, 0, 0, -1),
)
CLASSES = tuple(m[0] for m in MOTIONS)
KINDS = ("circle", "square", "triangle", "cross", "diamond")
COLOURS = np.array(
    [
        [230, 40, 40],
        [40, 200, 60],
        [50, 90, 240],
        [240, 220, 40],
        [230, 60, 230],
        [40, 220, 230],
        [250, 250, 250],
        [250, 140, 20],
    ],
    dtype=np.float32,
)


# ------------------------------------------------------------------------------------------------ drawing
def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float in [0, 255]: smooth colour noise plus stripes or checks, muted so objects stand out."""
    lo = rng.uniform(0, 1, (4, 4, 3))
    pos = np.linspace(0, 3, size)
    i0 = np.floor(pos).astype(int).clip(0, 2)
    interp = np.zeros((size, 4))  # (size, 4) linear interpolation weights
    interp[np.arange(size), i0] = 1 - (pos - i0)
    interp[np.arange(size), i0 + 1] = pos - i0
    img = np.einsum("yi,xj,ijc->yxc", interp, interp, lo)  # (size, size, 3) smooth colour field
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(5, 14)
    angle = rng.uniform(0, math.pi)
    if rng.random() < 0.5:
        pattern = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
    else:
        pattern = np.sign(np.sin(xs * 2 * math.pi / period)) * np.sign(np.sin(ys * 2 * math.pi / period))
    tint = rng.uniform(0, 1, 3)
    img = 0.6 * img + 0.25 * (pattern[..., None] * 0.5 + 0.5) * tint
    return (img * 150 + 30).clip(0, 255)


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit shape in object coordinates (u, v in [-1, 1])."""
    if kind == "circle":
        return u * u + v * v <= 1
    if kind == "square":
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if kind == "triangle":
        return (v <= 0.7) & (v >= -0.9 + 1.6 * np.abs(u) * 1.15)
    if kind == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1))
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    raise ValueError(f"unknown object kind {kind!r}")


def render_video(seed: int, label: int, cfg: SynthConfig) -> tuple[np.ndarray, int]:
    """One clip: frames (T, S, S, 3) uint8 and its object kind. Deterministic in (seed, label, cfg)."""
    rng = np.random.default_rng(seed)
    J = cfg.camera_jitter
    S, T = cfg.size + 2 * J, cfg.num_frames  # drawn on a canvas J pixels wider on each side, then cropped
    _, dx, dy, rot, grow = MOTIONS[label]
    kind = int(rng.integers(len(KINDS)))
    # a shared pool keeps the background from identifying the video, so instance discrimination must look at
    # the object and its motion
    pool = cfg.backgrounds
    bg = _background(np.random.default_rng([cfg.seed, int(rng.integers(pool))]) if pool else rng, S)
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float32)
    t = np.arange(T, dtype=np.float32) / (T - 1)  # (T,) in [0, 1]

    frames = np.repeat(bg[None], T, axis=0)  # (T, S, S, 3)
    for _ in range(cfg.num_objects):
        colour = COLOURS[rng.integers(cfg.colours or len(COLOURS))]
        V = cfg.size  # the visible frame; the canvas adds J on each side
        radius = V * rng.uniform(0.14, 0.2)
        # travel ~0.55-0.7 of the frame over the video: several pixels per sampled frame at stride 2
        travel = V * rng.uniform(0.55, 0.7) / math.hypot(dx, dy) if (dx or dy) else 0.0
        half = travel / 2
        extent = radius * (1.3 if grow else 1.0)  # keep most of the object inside the frame at its largest
        cx0 = J + rng.uniform(min(extent + half * abs(dx), V / 2), max(V - extent - half * abs(dx), V / 2))
        cy0 = J + rng.uniform(min(extent + half * abs(dy), V / 2), max(V - extent - half * abs(dy), V / 2))
        cx = cx0 + dx * (t - 0.5) * travel
        cy = cy0 + dy * (t - 0.5) * travel
        theta0 = rng.uniform(0, 2 * math.pi)
        theta = theta0 + rot * t * rng.uniform(1.2, 1.8) * math.pi  # a 216-324 degree turn over the video
        scale = np.ones_like(t)
        if grow:
            small, large = 0.45, 1.5
            scale = small + (large - small) * (t if grow > 0 else 1 - t)
        for i in range(T):
            r = radius * scale[i]
            c, s = math.cos(theta[i]), math.sin(theta[i])
            px, py = (xs - cx[i]) / r, (ys - cy[i]) / r
            u, v = c * px + s * py, -s * px + c * py
            inside = _shape_mask(KINDS[kind], u, v)
            shade = np.where(u > 0.35, 0.45, 1.0)[
                ..., None
            ]  # a dark stripe on one side shows the orientation
            frames[i] = np.where(inside[..., None], colour * shade, frames[i])
    if J:  # the camera shakes: every frame its own window of the canvas
        dy, dx = rng.integers(0, 2 * J + 1, size=(2, T))
        frames = np.stack(
            [f[y : y + cfg.size, x : x + cfg.size] for f, y, x in zip(frames, dy, dx, strict=True)]
        )
    if cfg.noise:
        frames = frames + rng.normal(0.0, cfg.noise, frames.shape).astype(np.float32)
    return frames.round().clip(0, 255).astype(np.uint8), kind


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int = 18, gop: int = 0) -> None:
    """Encode frames (T, H, W, 3) uint8 as H.264 (yuv420p) mp4. Single-threaded x264 for byte-identical output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf), "preset": "ultrafast", "threads": "1"}
        if gop:
            options["g"] = str(gop)
        stream.options = options
        stream.codec_context.thread_count = 1
        for img in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())


# ------------------------------------------------------------------------------------------------ dataset
def _video_seed(seed: int, split: str, i: int) -> int:
    return int(np.random.SeedSequence([seed, 0 if split == "train" else 1, i]).generate_state(1)[0])


def _write_one(job: tuple[Path, str, int, SynthConfig]) -> tuple[str, int, int]:
    out_dir, split, i, cfg = job
    seed = _video_seed(cfg.seed, split, i)
    label = i % len(MOTIONS)  # balanced classes
    frames, kind = render_video(seed, label, cfg)
    rel = f"{split}/{CLASSES[label]}/{i:05d}.mp4"
    write_mp4(out_dir / rel, frames, cfg.fps)
    return rel, label, kind


def write_synthetic_dataset(out_dir: str | Path, cfg: SynthConfig, workers: int = 0) -> dict:
    """Write the dataset into ``out_dir`` (layout in the module docstring); returns a summary for results.json.

    ``workers`` > 1 renders and encodes in that many processes (0 = one per CPU, at most 8); the files do not
    depend on it.
    """
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (out, split, i, cfg)
        for split, n in (("train", cfg.num_train), ("val", cfg.num_val))
        for i in range(n)
    ]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(jobs) > 8:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_write_one, jobs, chunksize=8))
    else:
        rows = [_write_one(j) for j in jobs]
    summary: dict = {"output_dir": str(out), "classes": len(CLASSES), "kinds": len(KINDS)}
    for split in ("train", "val"):
        mine = [r for r in rows if r[0].startswith(split + "/")]
        (out / f"{split}.txt").write_text("".join(f"{p} {lab}\n" for p, lab, _ in mine))
        (out / f"{split}_kinds.txt").write_text("".join(f"{p} {k}\n" for p, _, k in mine))
        summary[f"num_{split}"] = len(mine)
        summary[f"{split}_list"] = str(out / f"{split}.txt")
    (out / "label_map.json").write_text(
        json.dumps({"classes": list(CLASSES), "kinds": list(KINDS), "synth": asdict(cfg)}, indent=2)
    )
    return summary
