"""Frame shards (``sample-frames --shards``): written and read back frame for frame, WebDataset layout, resumable,
and pretraining items from them with CPU decoding in the workers or JPEG bytes decoded by the step."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch
from test_data_decode import index_colour, write_index_video
from test_data_sampling import _cfg, _frame_numbers

from crossvideomae.cli import main
from crossvideomae.data import build_pretrain_dataset, pretrain_collate
from crossvideomae.data.device_augment import DeviceAugment
from crossvideomae.data.shards import FrameShards, write_frame_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three index videos (30, 12, 30 frames; the second 48x48, the others 32x32) in shards of two videos, at
    the decoded size (short side 0)."""
    src = tmp_path_factory.mktemp("videos")
    write_index_video(src / "a.mp4", 30, preset="ultrafast")
    write_index_video(src / "b.mp4", 12, size=48, preset="ultrafast")
    write_index_video(src / "c.mp4", 30, preset="ultrafast")
    (src / "list.txt").write_text("a.mp4 0\nb.mp4 1\nc.mp4 2\n")
    out = tmp_path_factory.mktemp("shards")
    summary = write_frame_shards(
        src / "list.txt", out, short_side=0, videos_per_shard=2, workers=1, progress=False
    )
    return out, summary, src / "list.txt"


def test_shards_round_trip_every_frame(shards):
    out, summary, _ = shards
    assert summary["written"] == 3 and summary["frames"] == 72 and not summary["failed"]
    assert summary["bytes"] > 0 and summary["gib_per_hour"] > 0
    assert summary["hours_of_video"] == pytest.approx(72 / 25 / 3600, rel=1e-3)
    index = FrameShards(out / "index.csv")
    assert [r.label for r in index.records] == [0, 1, 2]
    for rec, n in zip(index.records, (30, 12, 30), strict=True):
        with index.open(rec.path) as video:
            assert video.info.num_frames == n
            ids = [n - 1, 0, 3, 3]
            frames = video.frames(ids)  # (N, H, W, 3)
            want = torch.tensor([index_colour(i) for i in ids], dtype=torch.float32)
            assert (frames.float().mean((1, 2)) - want).abs().max() <= 3  # H.264, then JPEG at quality 90
    with index.open(index.records[1].path) as video:
        assert video.size == (48, 48) and video.frames([0]).shape == (1, 48, 48, 3)


def test_shards_are_webdataset_tars_and_a_rerun_resumes(shards, tmp_path):
    out, _, source = shards
    with tarfile.open(out / "shards" / "000000.tar") as tar:
        names = tar.getnames()
    assert names[0] == "0000000.json" and names[1] == "0000000.000000.jpg" and "0000001.000011.jpg" in names
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == ["000000.tar", "000001.tar"]
    before = (out / "shards" / "000001.tar").stat().st_mtime_ns
    (out / "shards" / "000000.csv").unlink()  # as if the run had died while writing shard 0
    again = write_frame_shards(source, out, short_side=0, videos_per_shard=2, workers=1, progress=False)
    assert again["written"] == 3 and (out / "shards" / "000001.tar").stat().st_mtime_ns == before


@pytest.mark.parametrize("mode", ["cpu", "device-worker", "device-jpeg"])
def test_pretraining_items_from_shards_follow_the_frames(shards, tmp_path, mode):
    out, _, source = shards
    extra = [
        f"data.frame_shards={out / 'index.csv'}",
        "aug.temporal_downsample=1.0",
        "data.num_sampled_frames=2",
    ]
    if mode != "cpu":
        extra.append("data.augment=device")
    if mode == "device-jpeg":
        extra.append("data.shard_decode=device")
    cfg = _cfg(tmp_path, *extra)
    ds = build_pretrain_dataset(cfg)
    assert len(ds) == 3
    for epoch in range(3):
        ds.set_epoch(epoch)
        batch = pretrain_collate([ds[0], ds[1], ds[2]])
        if mode != "cpu":
            assert ("jpegs" in batch["plan"]) == (mode == "device-jpeg")
            assert ("frames" in batch) == (mode != "device-jpeg")
            batch = DeviceAugment(cfg)(batch)
        assert batch["video1"].shape == (3, 3, 4, 32, 32)
        for c in range(3):
            v1 = _frame_numbers(batch["video1"][c].permute(1, 0, 2, 3))
            imgs = _frame_numbers(batch["images"][c])
            assert [v1[p] for p in batch["frame_index1"][c].tolist()] == imgs


def test_encoded_frames_cross_to_the_main_process_as_one_tensor(shards, tmp_path):
    """A loader worker hands each tensor of a batch over through its own shared-memory file, and pinning copies
    each on its own: the batch's JPEGs travel as one buffer (was: one tensor per frame, 12x slower per worker)."""
    out, _, _ = shards
    cfg = _cfg(tmp_path, f"data.frame_shards={out / 'index.csv'}", "data.augment=device",
               "data.shard_decode=device", "aug.temporal_downsample=1.0")  # fmt: skip
    ds = build_pretrain_dataset(cfg)
    items = [ds[0], ds[1], ds[2]]
    batch = pretrain_collate(items)
    tensors = []
    torch.utils._pytree.tree_map(lambda x: tensors.append(x) if torch.is_tensor(x) else None, batch)
    frames = sum(len(it["jpegs"]) for it in items)
    assert frames > 3 and len(tensors) == len([k for k, v in batch.items() if torch.is_tensor(v)]) + 1
    parts = torch.split(batch["plan"]["jpegs"], batch["plan"]["jpeg_sizes"])
    assert [bytes(x.numpy()) for x in parts] == [bytes(j.numpy()) for it in items for j in it["jpegs"]]


def test_sample_frames_shards_command(tmp_path):
    write_index_video(tmp_path / "v.mp4", 10, preset="ultrafast")
    (tmp_path / "list.txt").write_text("v.mp4 4\n")
    res = main(["sample-frames", str(tmp_path / "list.txt"), "-o", str(tmp_path / "out"), "--shards",
                "--short-side", "16", "--quality", "80", "--workers", "1"])  # fmt: skip
    assert res["frames"] == 10 and res["written"] == 1
    with FrameShards(res["index"]).open(FrameShards(res["index"]).records[0].path) as video:
        assert video.frames([9]).shape == (1, 16, 16, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (nvjpeg)")
def test_jpegs_decode_in_batches_on_cuda(shards):
    out, _, source = shards
    index = FrameShards(out / "index.csv")
    with index.open(index.records[0].path) as video:
        jpegs, frames = video.jpegs(range(8)), video.frames(range(8))
    pool = DeviceAugment.decode(jpegs, torch.device("cuda"))
    assert pool.is_cuda and pool.shape == (8, 3, 32, 32)
    assert (pool.cpu().float() - frames.permute(0, 3, 1, 2).float()).abs().mean() < 2  # nvjpeg vs libjpeg
    assert np.isfinite(pool.float().mean().item())
