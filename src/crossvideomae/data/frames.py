"""A pre-sampled frame dataset (``crossvideomae sample-frames``): n frames per video as image files + an index.

Written into ``out_dir``::

    frames/<video number>_<frame index>.jpg    the extracted frames (full decoded resolution, or short side S)
    parts/<video number>.csv                   one finished video each; its presence marks the video done
    index.csv                                  video,label,frame_index,timestamp,image (paths relative to out_dir)
    failed.txt                                 videos that could not be decoded, "path: reason"

Resumable: a rerun skips videos whose part file exists (parts are written atomically after their frames), so
an interrupted extraction continues where it stopped; failed videos are tried again. Frame choice is seeded
per video (``seed``, video number), so the result depends on neither the worker count nor the order.
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .decode import DecodeError, open_video
from .lists import INDEX_FIELDS, read_list
from .sampling import sampled_positions


@dataclass
class _Job:
    number: int
    path: str
    label: int
    out_dir: Path
    n: int
    strategy: str
    seed: int
    short_side: int
    ext: str


def _extract(job: _Job) -> tuple[int, str | None]:
    """Extract one video's frames and write its part file; (number, error or None)."""
    rng = np.random.default_rng([job.seed, job.number])
    try:
        with open_video(job.path, short_side=job.short_side) as reader:
            num = reader.info.num_frames
            ids = [int(k) for k in sampled_positions(num, min(job.n, num), job.strategy, rng)]
            frames = reader.frames(ids).numpy()
            stamps = [reader.info.timestamp(i) for i in ids]
    except DecodeError as err:
        return job.number, str(err)
    rows = []
    for k, img, t in zip(ids, frames, stamps, strict=True):
        rel = f"frames/{job.number:07d}_{k:06d}.{job.ext}"
        Image.fromarray(img).save(job.out_dir / rel, quality=95)
        rows.append(
            {
                "video": os.path.relpath(job.path, job.out_dir),
                "label": job.label,
                "frame_index": k,
                "timestamp": f"{t:.6f}",
                "image": rel,
            }
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_FIELDS)
    writer.writerows(rows)
    part = job.out_dir / "parts" / f"{job.number:07d}.csv"
    tmp = part.with_suffix(".tmp")
    tmp.write_text(buf.getvalue())
    tmp.replace(part)  # atomic: a part file is complete or absent
    return job.number, None


def sample_frames(
    list_path: str,
    out_dir: str | Path,
    n: int = 1,
    strategy: str = "random",
    seed: int = 0,
    workers: int = 0,
    root: str = "",
    short_side: int = 0,
    ext: str = "jpg",
    progress: bool = True,
) -> dict:
    """Extract ``n`` frames per video of a list (or class-per-folder tree); returns a summary."""
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "parts").mkdir(exist_ok=True)
    records = read_list(list_path, root)
    done = {int(p.stem) for p in (out / "parts").glob("*.csv")}
    jobs = [
        _Job(i, r.path, r.label, out, n, strategy, seed, short_side, ext)
        for i, r in enumerate(records)
        if i not in done
    ]
    workers = workers or min(os.cpu_count() or 1, 16)
    failed: list[str] = []
    with tqdm(
        total=len(records), initial=len(done), desc="sample-frames", unit="video", disable=not progress
    ) as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = pool.map(_extract, jobs, chunksize=4)
                for _, err in results:
                    failed += [err] if err else []
                    bar.update()
        else:
            for job in jobs:
                _, err = _extract(job)
                failed += [err] if err else []
                bar.update()
    (out / "failed.txt").write_text("".join(f + "\n" for f in failed))
    with (out / "index.csv").open("w", newline="") as f:
        f.write(",".join(INDEX_FIELDS) + "\n")
        for part in sorted((out / "parts").glob("*.csv")):
            f.write(part.read_text())
    num_frames = sum(1 for _ in (out / "index.csv").open()) - 1
    return {
        "videos": len(records),
        "extracted_now": len(jobs) - len(failed),
        "skipped_done": len(done),
        "failed": failed,
        "frames": num_frames,
        "index": str(out / "index.csv"),
    }
