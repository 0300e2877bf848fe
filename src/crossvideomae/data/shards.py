"""A frame-shard dataset (``crossvideomae sample-frames --shards``): every frame of every video as a JPEG, in
tar shards (WebDataset layout) with an index for random access.

Written into ``out_dir``::

    shards/000000.tar       <key>.json (label, kind, fps, source) then <key>.<frame:06d>.jpg for each frame
    shards/000000.idx.npy   (members, 2) int64: data offset and size of each member of the tar, in order
    shards/000000.csv       the shard's rows of the index; its presence marks the shard done
    index.csv               key,label,kind,shard,first,num_frames,width,height,fps,seconds,video
    failed.txt              videos that could not be decoded, "path: reason"

``first`` is the member number of frame 0 in its shard (frame k is member first + k). The tars are plain
WebDataset shards (a sample per video, its frames under the extensions ``000000.jpg``, ``000001.jpg``, ...), so
other tools read them too; the loader reads single frames with one ``pread`` each through the ``.idx.npy``
offsets. Shards hold ``videos_per_shard`` consecutive videos of the list, so the output depends on neither the
worker count nor the order; a rerun skips finished shards (written atomically: tar, offsets, then rows).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
from tqdm import tqdm

from .decode import DecodeError, VideoInfo, open_video
from .lists import VideoRecord, read_list

FIELDS = (
    "key",
    "label",
    "kind",
    "shard",
    "first",
    "num_frames",
    "width",
    "height",
    "fps",
    "seconds",
    "video",
)
CHUNK = 128  # frames decoded and encoded at once: bounds the memory of long videos


# ------------------------------------------------------------------------------------------------ writing
@dataclass
class _ShardJob:
    number: int
    videos: list[tuple[int, VideoRecord]]  # (video number in the list, record)
    out_dir: Path
    short_side: int
    quality: int


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)  # mtime, owner 0: byte-identical reruns
    tar.addfile(info, io.BytesIO(data))


def _encoded_frames(
    path: str, short_side: int, quality: int
) -> tuple[list[bytes], VideoInfo, tuple[int, int]]:
    """Every frame of a video as JPEG bytes, its info and (h, w)."""
    with open_video(path, short_side=short_side) as reader:
        info, out = reader.info, []
        for a in range(0, info.num_frames, CHUNK):
            frames = reader.frames(range(a, min(a + CHUNK, info.num_frames))).permute(0, 3, 1, 2)
            out += [bytes(j.numpy()) for j in encode_jpeg(list(frames), quality=quality)]
    return out, info, tuple(frames.shape[-2:])


def _write_shard(job: _ShardJob) -> list[str]:
    """Write one shard, its offsets and its rows; returns the failures."""
    shards = job.out_dir / "shards"
    name = f"{job.number:06d}"
    tmp = shards / f"{name}.tar.tmp"
    rows, failed, members = [], [], 0
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for number, rec in job.videos:
            try:
                jpegs, info, (h, w) = _encoded_frames(rec.path, job.short_side, job.quality)
            except DecodeError as err:
                failed.append(str(err))
                continue
            key = f"{number:07d}"
            meta = {"label": rec.label, "kind": rec.kind, "fps": info.fps, "video": rec.path}
            _add(tar, f"{key}.json", json.dumps(meta).encode())
            for k, data in enumerate(jpegs):
                _add(tar, f"{key}.{k:06d}.jpg", data)
            rows.append(
                {
                    "key": key,
                    "label": rec.label,
                    "kind": rec.kind,
                    "shard": f"{name}.tar",
                    "first": members + 1,
                    "num_frames": len(jpegs),
                    "width": w,
                    "height": h,
                    "fps": f"{info.fps:.6g}",
                    "seconds": f"{info.num_frames / info.fps if info.fps else 0.0:.3f}",
                    "video": rec.path,
                }
            )
            members += 1 + len(jpegs)
    with tarfile.open(tmp) as tar:
        offsets = np.array([(m.offset_data, m.size) for m in tar], dtype=np.int64).reshape(-1, 2)
    tmp.replace(shards / f"{name}.tar")
    with open(shards / f"{name}.idx.npy.tmp", "wb") as f:
        np.save(f, offsets)
    (shards / f"{name}.idx.npy.tmp").replace(shards / f"{name}.idx.npy")
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=FIELDS).writerows(rows)
    (shards / f"{name}.csv.tmp").write_text(buf.getvalue())
    (shards / f"{name}.csv.tmp").replace(shards / f"{name}.csv")  # the shard is done
    return failed


def write_frame_shards(
    list_path: str,
    out_dir: str | Path,
    short_side: int = 256,
    quality: int = 90,
    videos_per_shard: int = 64,
    workers: int = 0,
    root: str = "",
    progress: bool = True,
) -> dict:
    """Every frame of the videos of a list (or class-per-folder tree) as JPEG shards; returns a summary with
    the disk cost per hour of video."""
    out = Path(out_dir)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    records = list(enumerate(read_list(list_path, root)))
    chunks = [records[a : a + videos_per_shard] for a in range(0, len(records), videos_per_shard)]
    jobs = [
        _ShardJob(s, videos, out, short_side, quality)
        for s, videos in enumerate(chunks)
        if not (out / "shards" / f"{s:06d}.csv").is_file()
    ]
    workers = workers or min(os.cpu_count() or 1, 16)
    failed: list[str] = []
    with tqdm(total=len(chunks), initial=len(chunks) - len(jobs), desc="shards", disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for errs in pool.map(_write_shard, jobs):
                    failed += errs
                    bar.update()
        else:
            for job in jobs:
                failed += _write_shard(job)
                bar.update()
    (out / "failed.txt").write_text("".join(f + "\n" for f in failed))
    with (out / "index.csv").open("w", newline="") as f:
        f.write(",".join(FIELDS) + "\n")
        for s in range(len(chunks)):
            f.write((out / "shards" / f"{s:06d}.csv").read_text())
    shards = FrameShards(out / "index.csv")
    size = sum(p.stat().st_size for p in (out / "shards").glob("*.tar"))
    hours = sum(float(r["seconds"]) for r in shards.rows) / 3600
    return {
        "videos": len(records),
        "written": len(shards.rows),
        "failed": failed,
        "frames": sum(int(r["num_frames"]) for r in shards.rows),
        "bytes": size,
        "hours_of_video": round(hours, 6),
        "gib_per_hour": round(size / 2**30 / hours, 3) if hours else None,
        "index": str(out / "index.csv"),
    }


# ------------------------------------------------------------------------------------------------ reading
class FrameShards:
    """The index of a frame-shard dataset: ``records`` (path ``SHARD#key``, label, kind) and :meth:`open`."""

    def __init__(self, index_path: str | Path):
        index_path = Path(index_path)
        if not index_path.is_file():
            raise FileNotFoundError(f"frame-shard index not found: {index_path}")
        self.dir = index_path.parent / "shards"
        with index_path.open(newline="") as f:
            self.rows = list(csv.DictReader(f))
        self.records = [
            VideoRecord(f"{self.dir / r['shard']}#{r['key']}", int(r["label"]), int(r["kind"]))
            for r in self.rows
        ]
        self._row = {rec.path: r for rec, r in zip(self.records, self.rows, strict=True)}
        self._files: dict[str, tuple[int, np.ndarray]] = {}  # shard -> (fd, offsets), opened on first use

    def _file(self, shard: str) -> tuple[int, np.ndarray]:
        # pread does not move a file position, so a descriptor inherited by a forked worker is safe to share
        if shard not in self._files:
            offsets = np.load(self.dir / shard.replace(".tar", ".idx.npy"), mmap_mode="r")
            self._files[shard] = (os.open(self.dir / shard, os.O_RDONLY), offsets)
        return self._files[shard]

    def open(self, path: str) -> contextlib.nullcontext[ShardVideo]:
        """The video at ``path`` as a context manager, like ``open_video`` (nothing to close: the shard stays open)."""
        r = self._row[path]
        fd, offsets = self._file(r["shard"])
        return contextlib.nullcontext(ShardVideo(path, fd, offsets, r))


class ShardVideo:
    """One video of a frame-shard dataset, with the interface of the video readers (``info``, ``frames``) and
    ``jpegs`` (the encoded frames, for decoding on the training device)."""

    def __init__(self, path: str, fd: int, offsets: np.ndarray, row: dict[str, str]):
        self.path, self.fd, self.offsets = path, fd, offsets
        self.first = int(row["first"])
        self.size = (int(row["height"]), int(row["width"]))
        n, fps = int(row["num_frames"]), float(row["fps"]) or 1.0
        self.info = VideoInfo(n, list(range(n)), Fraction(1 / fps).limit_denominator(1 << 20), fps)

    def jpegs(self, indices) -> list[torch.Tensor]:
        """Encoded frames at ``indices``: 1-D uint8 tensors."""
        out = []
        for k in indices:
            if not 0 <= int(k) < self.info.num_frames:
                raise DecodeError(self.path, f"frame index out of range 0..{self.info.num_frames - 1}: {k}")
            offset, size = self.offsets[self.first + int(k)]
            data = os.pread(self.fd, int(size), int(offset))
            if len(data) != size:
                raise DecodeError(self.path, f"truncated shard: frame {k} has {len(data)} of {size} bytes")
            out.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        return out

    def frames(self, indices) -> torch.Tensor:
        """uint8 (N, H, W, 3) frames at ``indices``, decoded on the CPU."""
        try:
            frames = decode_jpeg(self.jpegs(indices), mode=ImageReadMode.RGB)
        except RuntimeError as err:
            raise DecodeError(self.path, f"corrupt JPEG frame: {err}") from None
        return torch.stack(frames).permute(0, 2, 3, 1)
