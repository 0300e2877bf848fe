"""The synthetic dataset: real H.264 files, byte-identical per seed, balanced motion classes that need the
frame order, object kinds stored beside the lists, and the `synth` command."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from crossvideomae.cli import main
from crossvideomae.config import SynthConfig
from crossvideomae.data.synth import CLASSES, KINDS, MOTIONS, render_video, write_synthetic_dataset

CFG = SynthConfig(num_train=24, num_val=12, num_frames=16, size=32)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, write_synthetic_dataset(out, CFG, workers=2)


def test_files_are_decodable_h264_with_the_configured_shape(synth):
    out, summary = synth
    assert summary["num_train"] == 24 and summary["num_val"] == 12
    lines = (out / "train.txt").read_text().splitlines()
    assert len(lines) == 24
    for line in lines[:5]:
        path, label = line.split()
        with av.open(str(out / path)) as c:
            stream = c.streams.video[0]
            assert stream.codec_context.name == "h264"
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        assert len(frames) == 16 and frames[0].shape == (32, 32, 3)
        assert CLASSES[int(label)] in path  # class-per-folder layout


def test_same_seed_same_bytes_other_seed_other_bytes(synth, tmp_path):
    out, _ = synth
    write_synthetic_dataset(tmp_path / "a", CFG, workers=1)
    name = (out / "val.txt").read_text().split()[0]
    assert (tmp_path / "a" / name).read_bytes() == (out / name).read_bytes()
    assert (tmp_path / "a" / "train_kinds.txt").read_text() == (out / "train_kinds.txt").read_text()
    other = SynthConfig(**{**CFG.__dict__, "seed": 1, "num_train": 1, "num_val": 1})
    write_synthetic_dataset(tmp_path / "b", other, workers=1)
    first = (out / "train.txt").read_text().split()[0]
    assert (tmp_path / "b" / first).read_bytes() != (out / first).read_bytes()


def test_classes_balanced_and_kinds_and_label_map(synth):
    out, _ = synth
    assert len(CLASSES) >= 10
    labels = [int(line.split()[1]) for line in (out / "train.txt").read_text().splitlines()]
    assert np.bincount(labels).tolist() == [2] * 12
    kinds = [int(line.split()[1]) for line in (out / "train_kinds.txt").read_text().splitlines()]
    assert set(kinds) <= set(range(len(KINDS))) and len(set(kinds)) >= 3
    label_map = json.loads((out / "label_map.json").read_text())
    assert label_map["classes"] == list(CLASSES) and label_map["kinds"] == list(KINDS)


def _object_track(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame centroid (x, y) and area of the pixels that differ from the per-pixel median over time (the
    static background wherever the object does not stay long)."""
    f = frames.astype(np.float32)
    moving = np.abs(f - np.median(f, axis=0)).sum(-1) > 60  # (T, S, S)
    ys, xs = np.mgrid[0 : f.shape[1], 0 : f.shape[2]]
    area = moving.sum((1, 2))
    cx = (moving * xs).sum((1, 2)) / np.maximum(area, 1)
    cy = (moving * ys).sum((1, 2)) / np.maximum(area, 1)
    return np.stack([cx, cy], 1), area


@pytest.mark.parametrize("label", [0, 1, 2, 3, 4, 7])
def test_translation_classes_move_several_pixels_in_their_direction(label):
    cfg = SynthConfig(num_frames=32, size=64)
    for seed in range(3):
        frames, _ = render_video(seed, label, cfg)
        track, _ = _object_track(frames)
        _, dx, dy, _, _ = MOTIONS[label]
        shift = track[-4:].mean(0) - track[:4].mean(0)  # (x, y) over the video
        assert np.sign(np.round(shift / 8)).tolist() == [dx, dy], (CLASSES[label], seed, shift)
        assert np.abs(shift).max() > 20  # > 0.6 px per frame, > 1.2 px per sampled frame at stride 2


def test_grow_and_shrink_are_time_reversals_in_size():
    cfg = SynthConfig(num_frames=32, size=64)
    grow, _ = render_video(5, CLASSES.index("grow"), cfg)
    shrink, _ = render_video(5, CLASSES.index("shrink"), cfg)
    # same seed: same background, kind, colour and place; the sizes run in opposite directions
    assert np.array_equal(grow[0], shrink[-1]) and np.array_equal(grow[-1], shrink[0])
    assert (grow[-1] != grow[0]).any(axis=-1).sum() > 300  # a large change in pixels


def test_synth_command_writes_into_the_output_dir(tmp_path):
    res = main(
        ["synth", "-o", str(tmp_path / "data"), "synth.num_train=12", "synth.num_val=12", "synth.size=32"]
    )
    assert res["num_train"] == 12 and (tmp_path / "data" / "train.txt").is_file()
    assert (tmp_path / "data" / "val.txt").is_file() and (tmp_path / "data" / "results.json").is_file()


def test_camera_jitter_and_noise_move_every_pixel_but_keep_the_motion():
    calm = SynthConfig(size=32, num_frames=8)
    shaky = SynthConfig(size=32, num_frames=8, camera_jitter=3, noise=4.0)
    still, _ = render_video(7, 0, calm)
    moving, kind = render_video(7, 0, shaky)
    assert moving.shape == still.shape and moving.dtype == np.uint8
    assert kind == render_video(7, 0, calm)[1]  # the same object: only the camera and the sensor changed
    bg_still = (np.abs(np.diff(still.astype(int), axis=0)).sum(-1) == 0).mean()  # pixels constant in time
    bg_moving = (np.abs(np.diff(moving.astype(int), axis=0)).sum(-1) == 0).mean()
    assert bg_still > 0.5 and bg_moving < 0.05
    np.testing.assert_array_equal(moving, render_video(7, 0, shaky)[0])  # still a pure function of the seed
    with pytest.raises(SystemExit, match="synth.camera_jitter"):
        main(["synth", "-o", "/nonexistent-unused", "synth.camera_jitter=99"])
