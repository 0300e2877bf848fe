"""Clip index math, and through the pretraining dataset on videos whose frames encode their own index: the
clip is T frames at the stride, the sampled frame sits at frame_index1 in view 1 and (after temporal
down-sampling) at frame_index2 in view 2, and a pre-sampled frame lies inside the clip window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_data_decode import write_index_video

from crossvideomae.config import load_config
from crossvideomae.data import build_pretrain_dataset, pretrain_collate
from crossvideomae.data.sampling import (
    clip_ids,
    downsample_ids,
    even_starts,
    random_start,
    sampled_positions,
    start_containing,
)


def test_clip_ids_pad_short_videos_with_the_last_frame():
    assert clip_ids(2, 4, 3, 100).tolist() == [2, 5, 8, 11]
    assert clip_ids(0, 6, 4, 10).tolist() == [0, 4, 8, 9, 9, 9]


def test_random_start_keeps_the_window_inside():
    rng = np.random.default_rng(0)
    starts = {random_start(40, 8, 4, rng) for _ in range(500)}  # window 29 frames -> starts 0..11
    assert starts == set(range(12))
    assert random_start(10, 8, 4, rng) == 0  # window longer than the video


def test_even_starts_cover_the_video():
    assert even_starts(100, 8, 2, 3) == [0, 42, 85]
    assert even_starts(100, 8, 2, 1) == [42]
    assert even_starts(5, 8, 2, 2) == [0, 0]


def test_sampled_positions_strategies():
    rng = np.random.default_rng(0)
    assert sampled_positions(16, 2, "first", rng).tolist() == [0, 1]
    assert sampled_positions(16, 2, "middle", rng).tolist() == [7, 8]
    r = sampled_positions(16, 3, "random", rng)
    assert len(set(r.tolist())) == 3 and r.min() >= 0 and r.max() < 16


@pytest.mark.parametrize("video_len", [200, 20])
def test_start_containing_puts_the_frame_on_a_slot(video_len):
    rng = np.random.default_rng(1)
    for frame in range(0, video_len, 7):
        start, slot = start_containing(frame, video_len, 8, 3, rng)
        ids = clip_ids(start, 8, 3, video_len)
        assert start >= 0
        assert ids[slot] == frame


def test_downsample_follows_the_first_sampled_frame():
    rng = np.random.default_rng(2)
    for _ in range(200):
        start = random_start(300, 8, 4, rng)
        ids1 = clip_ids(start, 8, 4, 300)
        pos = sampled_positions(8, 2, "random", rng)
        ids2, pos2 = downsample_ids(ids1, pos, 4, 300, rng)
        assert np.all(np.diff(ids2) == 8)  # twice the stride
        assert ids2[pos2[0]] == ids1[pos[0]]  # the frame moved to its new slot
        assert abs(int(ids2[pos2[1]]) - int(ids1[pos[1]])) <= 4  # the nearest slot (<= stride) for the others


def _cfg(tmp_path, *extra):
    return load_config(
        "tiny",
        [
            f"data.train_list={tmp_path / 'list.txt'}",
            "model.num_frames=4",
            "model.img_size=32",
            "data.short_side=32",
            "data.frame_stride=2",
            "data.crop_scale=[1.0,1.0]",
            "data.image_crop_scale=[1.0,1.0]",
            "data.flip=false",
            "aug.randaugment=''",
            "aug.color_jitter=0",
            "aug.random_erasing=0",
            *extra,
        ],
    )


def _frame_numbers(x: torch.Tensor, mean: float = 0.485, std: float = 0.229) -> list[int]:
    """Normalised (..., 3, H, W) grey frames -> encoded frame numbers (undoing the red channel's normalisation)."""
    v = (x[..., 0, :, :].mean(dim=(-1, -2)) * std + mean) * 255
    return [round((float(a) - 4) / 8) for a in v.flatten()]


def test_views_and_sampled_frames_follow_the_indices(tmp_path):
    write_index_video(tmp_path / "v.mp4", 30, preset="ultrafast")
    (tmp_path / "list.txt").write_text("v.mp4 0\nv.mp4 1\n")
    cfg = _cfg(tmp_path, "aug.temporal_downsample=1.0", "data.num_sampled_frames=2")
    ds = build_pretrain_dataset(cfg)
    for epoch in range(15):
        ds.set_epoch(epoch)
        item = ds[epoch % 2]
        v1 = _frame_numbers(item["video1"].permute(1, 0, 2, 3))  # (T, 3, H, W)
        v2 = _frame_numbers(item["video2"].permute(1, 0, 2, 3))
        imgs = _frame_numbers(item["images"])
        assert np.all(np.diff(v1) == 2) or v1[-1] == 29  # stride 2 (or padded at the end)
        assert all(b - a in (0, 4) for a, b in zip(v2, v2[1:], strict=False))  # stride 4 after down-sampling
        f1, f2 = item["frame_index1"].tolist(), item["frame_index2"].tolist()
        assert [v1[p] for p in f1] == imgs  # the image branch shows the frames at frame_index1
        assert v2[f2[0]] == imgs[0]  # ... and view 2 has the first one at frame_index2
        assert abs(v2[f2[1]] - imgs[1]) <= 2


def test_presampled_frame_is_inside_the_clip(tmp_path):
    write_index_video(tmp_path / "v.mp4", 30, preset="ultrafast")
    rows = ["video,label,frame_index,timestamp,image"]
    for k in (3, 17, 28):
        # the stored image is a different grey on purpose: the image branch must read the file
        from PIL import Image

        Image.fromarray(np.full((32, 32, 3), 250, np.uint8)).save(tmp_path / f"f{k}.png")
        rows.append(f"v.mp4,5,{k},{k / 25:.4f},f{k}.png")
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    cfg = _cfg(tmp_path, f"data.presampled={tmp_path / 'index.csv'}", "aug.temporal_downsample=0.5")
    ds = build_pretrain_dataset(cfg)
    seen = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        item = ds[0]
        v1 = _frame_numbers(item["video1"].permute(1, 0, 2, 3))
        frame = v1[int(item["frame_index1"][0])]
        assert frame in (3, 17, 28)
        seen.add(frame)
        assert _frame_numbers(item["images"]) == [round((250 - 4) / 8)]  # read from the image file
        assert int(item["label"]) == 5
    assert len(seen) >= 2


def test_repeated_sampling_flattens_in_collate(tmp_path):
    write_index_video(tmp_path / "v.mp4", 30, preset="ultrafast")
    (tmp_path / "list.txt").write_text("v.mp4 0\nv.mp4 1\nv.mp4 2\n")
    cfg = _cfg(tmp_path, "data.repeated_sampling=3", "data.num_sampled_frames=2")
    ds = build_pretrain_dataset(cfg)
    item = ds[1]
    assert item["video1"].shape == (3, 3, 4, 32, 32) and item["frame_index1"].shape == (3, 2)
    batch = pretrain_collate([ds[0], ds[1]])
    assert batch["video1"].shape == (6, 3, 4, 32, 32)
    assert batch["images"].shape == (6, 2, 3, 32, 32)
    assert batch["label"].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch["skipped"] == []
    starts = {_frame_numbers(batch["video1"][k].permute(1, 0, 2, 3))[0] for k in range(3)}
    assert len(starts) > 1  # the r clips of one video differ


def test_downsample_on_a_short_video_falls_back_instead_of_repeating_frames():
    rng = np.random.default_rng(0)
    ids1 = clip_ids(0, 16, 2, 32)  # a 32-frame video, 16 frames at stride 2: the window spans 31 frames
    assert downsample_ids(ids1, np.array([3]), 2, 32, rng) is None  # stride 4 would need 61 frames
    ids2, pos2 = downsample_ids(ids1, np.array([3]), 2, 61, rng)  # exactly long enough: one window, 0..60
    assert ids2.tolist() == list(range(0, 61, 4))
    assert abs(int(ids2[pos2[0]]) - int(ids1[3])) == 2  # frame 6 is on no slot: the nearest one


def test_dataset_counts_the_temporal_fallback(tmp_path):
    write_index_video(tmp_path / "v.mp4", 8, preset="ultrafast")  # 4 frames at stride 2 span 7: x2 needs 13
    write_index_video(tmp_path / "w.mp4", 30, preset="ultrafast")
    (tmp_path / "list.txt").write_text("v.mp4 0\nw.mp4 1\n")
    ds = build_pretrain_dataset(_cfg(tmp_path, "aug.temporal_downsample=1.0"))
    short, long = ds[0], ds[1]
    assert bool(short["temporal_fallback"]) and not bool(long["temporal_fallback"])
    assert torch.equal(short["video1"], short["video2"])  # no frame of view 2 repeated past the end
    frames = _frame_numbers(short["video2"].permute(1, 0, 2, 3))
    assert np.all(np.diff(frames) == 2) and frames[-1] <= 7  # stride 2 inside the 8 frames, nothing repeated
    assert _frame_numbers(long["video2"].permute(1, 0, 2, 3)) != _frame_numbers(
        long["video1"].permute(1, 0, 2, 3)
    )
