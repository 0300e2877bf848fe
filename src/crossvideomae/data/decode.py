"""Decode chosen frames of a video file: PyAV (default) or torchcodec (when installed).

Frame index k means the k-th frame in presentation order. PyAV maps it to a timestamp through the stream's
packet timestamps (demuxing reads them without decoding, so variable frame rate is exact), seeks to the
key frame before the first wanted frame and decodes only up to the last wanted one. Frames are converted to
RGB by libswscale, optionally already resized so that the short side is ``short_side`` (the view-1 short-side
scale costs nothing extra there, and every later op works on the smaller frame).

Any failure (missing / zero-byte / truncated / corrupt file, unsupported codec) raises :class:`DecodeError`
whose message names the file and the reason; the datasets log it and draw another video.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter


class DecodeError(RuntimeError):
    """A video could not be decoded; ``str(err)`` is ``"path: reason"``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class VideoInfo:
    num_frames: int
    pts: list[int]  # presentation timestamps of frames 0..num_frames-1, sorted, in time_base units
    time_base: Fraction
    fps: float  # average frame rate (for reporting only; indexing uses pts)

    def timestamp(self, index: int) -> float:
        """Seconds of frame ``index`` from the stream start."""
        return float((self.pts[index] - self.pts[0]) * self.time_base)


def _fraction(x) -> Fraction:
    """A stream rational as a Fraction: PyAV <= 18 gives Fraction or None, PyAV 19 its own ``AVRational``
    (falsy when unset)."""
    if not x:
        return Fraction(0)
    try:
        return Fraction(x.numerator, x.denominator)
    except AttributeError:
        return Fraction(float(x)).limit_denominator(1 << 30)


def _scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the short side = short_side and the aspect kept (even numbers not needed for RGB)."""
    if short_side <= 0 or min(width, height) == short_side:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise DecodeError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise DecodeError(path, "zero-byte file")


SKIP_MARGIN = 16  # frames before the first wanted one from which every frame is decoded again

_local = threading.local()
_inherited: list[VideoReformatter] = []  # contexts of a parent process, never freed (see below)


def _reformatter() -> VideoReformatter:
    """One libswscale context cache per thread and process: building a context costs ~3 ms, more than
    converting a small frame, and a fresh frame or container would otherwise build a new one.

    A forked child (a DataLoader worker) must neither use nor free the context it inherited: freeing joins
    swscale's worker threads, which do not exist in the child, and hangs. So it is parked, and a new one made.
    """
    if getattr(_local, "pid", None) != os.getpid():
        if hasattr(_local, "reformatter"):
            _inherited.append(_local.reformatter)
        _local.reformatter, _local.pid = VideoReformatter(), os.getpid()
    return _local.reformatter


class PyAVReader:
    """One open video file: ``info`` on open, then :meth:`frames`. A context manager; open one per item in the
    worker that decodes it (open containers must not cross a fork). ``threads`` > 0: FFmpeg frame + slice
    threading with that many threads (0 = FFmpeg's default, one per core)."""

    def __init__(self, path: str, threads: int = 1, short_side: int = 0):
        _check_file(path)
        self.path, self.short_side = path, short_side
        try:
            try:
                self.container = av.open(path, metadata_errors="ignore")
            except TypeError:  # PyAV 19 (the GPU image's wheel) dropped the argument
                self.container = av.open(path)
        except av.FFmpegError as err:
            raise DecodeError(path, f"cannot open: {err}") from None
        if not self.container.streams.video:
            self.close()
            raise DecodeError(path, "no video stream")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:  # FFmpeg has no decoder for this codec
            self.close()
            raise DecodeError(path, "unsupported codec: FFmpeg has no decoder for it")
        self.stream.thread_type = "AUTO"
        self.stream.thread_count = threads
        try:
            pts = sorted(p.pts for p in self.container.demux(self.stream) if p.pts is not None and p.size > 0)
        except av.FFmpegError as err:
            self.close()
            raise DecodeError(path, f"corrupt container: {err}") from None
        if not pts:
            self.close()
            raise DecodeError(path, "no video frames")
        rate = _fraction(self.stream.average_rate) or _fraction(self.stream.guessed_rate)
        self.info = VideoInfo(len(pts), pts, _fraction(self.stream.time_base) or Fraction(1, 1), float(rate))

    def frames(self, indices) -> torch.Tensor:
        """uint8 (N, H, W, 3) frames at ``indices`` (any order, repeats allowed, each in [0, num_frames))."""
        info, path = self.info, self.path
        want = sorted({int(i) for i in indices})
        if want[0] < 0 or want[-1] >= info.num_frames:
            raise DecodeError(
                path, f"frame index out of range 0..{info.num_frames - 1}: {want[0]}..{want[-1]}"
            )
        ctx = self.stream.codec_context
        size = _scaled_size(ctx.width, ctx.height, self.short_side)
        # area averaging when shrinking: anti-aliased and ~10x cheaper than swscale's default bicubic
        interp = "AREA" if size[0] < ctx.width else "BILINEAR"
        skip_until = want[0] - SKIP_MARGIN
        got = self._decode(want, size, interp, skip_until)
        if len(got) < len(want) and skip_until > 0:  # a wanted frame was skipped after all: a plain pass
            got = self._decode(want, size, interp, -1)
        if len(got) < len(want):
            missing = [i for i in want if i not in got]
            raise DecodeError(
                path,
                f"truncated or corrupt: {len(missing)} of {len(want)} wanted frames not decoded (first {missing[0]})",
            )
        return torch.from_numpy(np.stack([got[int(i)] for i in indices]))

    def _decode(
        self, want: list[int], size: tuple[int, int], interp: str, skip_until: int
    ) -> dict[int, np.ndarray]:
        """One pass from the key frame before ``want[0]`` to ``want[-1]``: frame id -> RGB array.

        Until frame ``skip_until`` (when > 0) the decoder drops non-reference frames (``skip_frame=NONREF``):
        nothing depends on them, and with x264's B-frames they are about half of the frames between the key
        frame and the clip, which a long key-frame interval (x264's default is 250) makes the bulk of the work.
        """
        info, ctx = self.info, self.stream.codec_context
        by_pts = {info.pts[i]: i for i in want}
        last_pts = info.pts[want[-1]]
        switch_pts = info.pts[skip_until] if skip_until > 0 else None
        got: dict[int, np.ndarray] = {}
        try:
            ctx.skip_frame = "NONREF" if switch_pts is not None else "DEFAULT"
            # the key frame at or before the first wanted frame; decoding stops after the last wanted one
            self.container.seek(info.pts[want[0]], stream=self.stream, backward=True, any_frame=False)
            for frame in self.container.decode(self.stream):
                if frame.pts is None:
                    continue
                if switch_pts is not None and frame.pts >= switch_pts:
                    ctx.skip_frame, switch_pts = "DEFAULT", None
                if frame.pts in by_pts:
                    rgb = _reformatter().reformat(
                        frame, width=size[0], height=size[1], format="rgb24", interpolation=interp
                    )
                    got[by_pts[frame.pts]] = rgb.to_ndarray()
                if frame.pts >= last_pts:
                    break
        except av.FFmpegError as err:
            raise DecodeError(self.path, f"decode failed: {err}") from None
        finally:
            ctx.skip_frame = "DEFAULT"
        return got

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TorchCodecReader:
    """torchcodec's VideoDecoder (CPU, or NVDEC with ``device="cuda"``) with exact frame indexing; same interface
    as :class:`PyAVReader`. Frames come at full size; the transforms resize them."""

    def __init__(self, path: str, device: str = "cpu"):
        from torchcodec.decoders import VideoDecoder

        _check_file(path)
        self.path = path
        try:
            self.decoder = VideoDecoder(path, device=device, seek_mode="exact")
        except Exception as err:  # torchcodec raises RuntimeError / ValueError for unreadable files
            raise DecodeError(path, f"cannot open: {err}") from None
        n, meta = len(self.decoder), self.decoder.metadata
        if n == 0:
            raise DecodeError(path, "no video frames")
        fps = float(meta.average_fps or 1.0)
        # timestamps at the average rate: only the sample-frames index reports them
        self.info = VideoInfo(n, [round(i * 1e6 / fps) for i in range(n)], Fraction(1, 1_000_000), fps)

    def frames(self, indices) -> torch.Tensor:
        try:
            data = self.decoder.get_frames_at([int(i) for i in indices]).data  # (N, 3, H, W)
        except Exception as err:
            raise DecodeError(self.path, f"decode failed: {err}") from None
        return data.permute(0, 2, 3, 1).cpu()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(path: str, backend: str = "pyav", threads: int = 1, short_side: int = 0, device: str = "cpu"):
    """A reader with ``.info`` (:class:`VideoInfo`) and ``.frames(indices) -> (N, H, W, 3) uint8``."""
    if backend == "pyav":
        return PyAVReader(path, threads=threads, short_side=short_side)
    if backend == "torchcodec":
        return TorchCodecReader(path, device=device)
    raise ValueError(f"unknown decoding backend {backend!r} (pyav | torchcodec)")
