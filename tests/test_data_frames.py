"""`crossvideomae sample-frames`: the right frames (content checked), the index, resuming, failures listed,
independence from the worker count, and pretraining from the index."""

from __future__ import annotations

import csv

import numpy as np
import torch
from PIL import Image
from test_data_decode import decoded_indices, write_index_video

from crossvideomae.cli import main
from crossvideomae.config import load_config
from crossvideomae.data import build_pretrain_dataset
from crossvideomae.data.frames import sample_frames


def _videos(tmp_path, n=4):
    for k in range(n):
        write_index_video(tmp_path / f"v{k}.mp4", 20 + k, preset="ultrafast")
    (tmp_path / "list.txt").write_text("".join(f"v{k}.mp4 {k}\n" for k in range(n)))
    return tmp_path / "list.txt"


def _index(out):
    with (out / "index.csv").open() as f:
        return list(csv.DictReader(f))


def test_frames_index_and_content(tmp_path):
    lst = _videos(tmp_path)
    res = sample_frames(str(lst), tmp_path / "out", n=3, strategy="random", seed=0, workers=1, progress=False)
    rows = _index(tmp_path / "out")
    assert res["frames"] == len(rows) == 12 and res["failed"] == []
    for r in rows:
        img = np.array(Image.open(tmp_path / "out" / r["image"]))
        assert decoded_indices(torch.from_numpy(img)[None]) == [int(r["frame_index"])]  # the stored picture
        assert abs(float(r["timestamp"]) - int(r["frame_index"]) * 0.04) < 1e-6
        assert (tmp_path / "out" / r["video"]).resolve() == (tmp_path / f"v{r['label']}.mp4").resolve()
    mid = sample_frames(str(lst), tmp_path / "mid", n=2, strategy="middle", workers=1, progress=False)
    assert mid["frames"] == 8
    assert [int(r["frame_index"]) for r in _index(tmp_path / "mid")][:2] == [9, 10]  # 20 frames: 9, 10


def test_resume_skips_finished_videos_and_workers_do_not_matter(tmp_path):
    lst = _videos(tmp_path)
    first = sample_frames(str(lst), tmp_path / "a", n=2, seed=3, workers=2, progress=False)
    assert first["extracted_now"] == 4
    (tmp_path / "a" / "parts" / "0000002.csv").unlink()  # as if interrupted before video 2 finished
    again = sample_frames(str(lst), tmp_path / "a", n=2, seed=3, workers=1, progress=False)
    assert again["skipped_done"] == 3 and again["extracted_now"] == 1
    serial = sample_frames(str(lst), tmp_path / "b", n=2, seed=3, workers=1, progress=False)
    assert serial["frames"] == 8
    assert (tmp_path / "a" / "index.csv").read_text() == (tmp_path / "b" / "index.csv").read_text()


def test_failed_video_is_listed_and_retried(tmp_path):
    lst = _videos(tmp_path, n=2)
    (tmp_path / "v1.mp4").write_bytes(b"")
    res = sample_frames(str(lst), tmp_path / "out", n=1, workers=1, progress=False)
    assert len(res["failed"]) == 1 and "zero-byte" in res["failed"][0]
    assert "v1.mp4" in (tmp_path / "out" / "failed.txt").read_text()
    write_index_video(tmp_path / "v1.mp4", 21, preset="ultrafast")
    fixed = sample_frames(str(lst), tmp_path / "out", n=1, workers=1, progress=False)
    assert fixed["failed"] == [] and fixed["extracted_now"] == 1 and fixed["frames"] == 2


def test_command_and_pretraining_from_the_index(tmp_path):
    lst = _videos(tmp_path, n=2)
    res = main(["sample-frames", str(lst), "-o", str(tmp_path / "frames"), "-n", "2", "--workers", "1"])
    assert res["frames"] == 4
    cfg = load_config(
        "tiny",
        [f"data.presampled={tmp_path / 'frames' / 'index.csv'}", "model.num_frames=4", "model.img_size=32",
         "data.short_side=32", "data.frame_stride=2"],
    )  # fmt: skip
    ds = build_pretrain_dataset(cfg)
    assert len(ds) == 2 and sorted(lab for _, lab in ds.samples) == [0, 1]
    item = ds[1]
    assert item["images"].shape == (1, 3, 32, 32) and int(item["label"]) == 1
    assert torch.isfinite(item["video1"]).all()
