"""Decoding: frame index <-> content and timestamp (constant and variable frame rate, B-frames, seeking),
resizing at decode time, and every kind of bad file named with its reason."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from crossvideomae.data.decode import DecodeError, open_video


def index_colour(i: int) -> tuple[int, int, int]:
    """RGB that encodes frame i: red and green each carry a base-31 digit (spacing 8 survives H.264)."""
    return 8 * (i % 31) + 4, 8 * (i // 31) + 4, 128


def write_index_video(
    path: Path,
    n: int,
    size: int = 32,
    pts_ms: list[int] | None = None,
    gop: int = 4,
    preset: str = "medium",
) -> Path:
    """An H.264 mp4 whose frame i is a flat ``index_colour(i)``; frames at ``pts_ms`` when given (variable
    frame rate), else 25 fps. ``medium`` uses B-frames, so decode order != presentation order."""
    assert n <= 31 * 31
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "8", "preset": preset, "g": str(gop)}
        s.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(
                np.full((size, size, 3), index_colour(i), np.uint8), format="rgb24"
            )
            f.pts = pts_ms[i] if pts_ms else i * 40
            f.time_base = Fraction(1, 1000)
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


def decoded_indices(frames: torch.Tensor) -> list[int]:
    """(N, H, W, 3) flat frames -> the frame numbers they encode."""
    rg = [[round((float(v) - 4) / 8) for v in px] for px in frames.float().mean(dim=(1, 2))[:, :2]]
    return [r + 31 * g for r, g in rg]


def test_frames_match_indices_in_any_order_with_seeking(tmp_path):
    path = write_index_video(tmp_path / "v.mp4", 30, gop=4)
    with open_video(str(path)) as reader:
        assert reader.info.num_frames == 30
        for ids in ([0, 1, 2], [29], [27, 3, 15, 15, 8], list(range(0, 30, 4)), [12, 13]):
            assert decoded_indices(reader.frames(ids)) == ids


def test_long_gop_skips_non_reference_frames_yet_returns_the_right_ones(tmp_path):
    path = write_index_video(tmp_path / "long.mp4", 200, size=16, gop=250)  # one key frame, B-frames
    with open_video(str(path)) as reader:
        for ids in (
            [120, 124, 128, 132],
            [199],
            [40, 41, 42, 43, 44, 45],
            [17, 150],
            list(range(60, 124, 4)),
        ):
            assert decoded_indices(reader.frames(ids)) == ids


def test_variable_frame_rate_timestamps_and_content(tmp_path):
    pts = [0, 40, 50, 130, 140, 300, 310, 400, 500, 520, 560, 700]
    path = write_index_video(tmp_path / "vfr.mp4", len(pts), pts_ms=pts, gop=3)
    with open_video(str(path)) as reader:
        assert [round(reader.info.timestamp(k), 3) for k in range(len(pts))] == [p / 1000 for p in pts]
        ids = [11, 4, 5, 0]
        assert decoded_indices(reader.frames(ids)) == ids


def test_short_side_resize_at_decode(tmp_path):
    path = tmp_path / "wide.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 48, "yuv420p"
        for _ in range(3):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 96, 3), np.uint8), format="rgb24")))
        c.mux(s.encode())
    with open_video(str(path), short_side=32) as reader:
        assert reader.frames([0, 2]).shape == (2, 32, 64, 3)


def test_frame_threading_gives_the_same_frames(tmp_path):
    path = write_index_video(tmp_path / "v.mp4", 20)
    with open_video(str(path), threads=1) as a, open_video(str(path), threads=4) as b:
        assert torch.equal(a.frames([3, 9, 19]), b.frames([3, 9, 19]))


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = write_index_video(tmp_path / "good.mp4", 20, preset="ultrafast")
    data = good.read_bytes()
    files = {
        "zero": (tmp_path / "zero.mp4", "zero-byte"),
        "garbage": (tmp_path / "garbage.mp4", "cannot open"),
        "truncated": (tmp_path / "truncated.mp4", ""),
        "audio_only": (tmp_path / "audio.mp4", "no video stream"),
        "missing": (tmp_path / "nope.mp4", "file not found"),
        "unsupported": (tmp_path / "unsupported.mp4", "unsupported codec"),
    }
    files["unsupported"][0].write_bytes(data.replace(b"avc1", b"zzzz"))  # a codec tag no decoder claims
    files["zero"][0].write_bytes(b"")
    files["garbage"][0].write_bytes(bytes(range(256)) * 64)
    files["truncated"][0].write_bytes(data[: len(data) // 2])
    with av.open(str(files["audio_only"][0]), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        c.mux(s.encode(frame))
        c.mux(s.encode())
    return files


def test_bad_files_raise_decode_error_naming_file_and_reason(tmp_path):
    for name, (path, reason) in _bad_files(tmp_path).items():
        with pytest.raises(DecodeError) as info:
            with open_video(str(path)) as reader:
                reader.frames([0, 5, 15])
        assert str(path) in str(info.value), name
        assert reason in info.value.reason, (name, info.value.reason)


def test_index_past_the_end_is_an_error(tmp_path):
    path = write_index_video(tmp_path / "v.mp4", 10, preset="ultrafast")
    with open_video(str(path)) as reader, pytest.raises(DecodeError, match="out of range"):
        reader.frames([3, 10])


def test_forked_loader_workers_decode_after_the_parent_did(tmp_path):
    """A DataLoader forks its workers; the parent has often decoded already (a first batch, a picture).
    The inherited swscale context must not hang the children."""
    from torch.utils.data import DataLoader, Dataset

    path = str(write_index_video(tmp_path / "v.mp4", 12, preset="ultrafast"))

    class Frames(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            with open_video(path) as reader:
                return reader.frames([i])

    assert decoded_indices(Frames()[2]) == [2]  # decode in the parent first
    loader = DataLoader(Frames(), batch_size=1, num_workers=2, timeout=60, multiprocessing_context="fork")
    assert [decoded_indices(b[0])[0] for b in loader] == [0, 1, 2, 3]
