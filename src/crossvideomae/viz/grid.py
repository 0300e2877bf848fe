"""The paper's Fig. 1 as a picture grid: one column per time slice of the clip plus one for the sampled frame.

Rows for each clip: original frames, masked frames, reconstruction (hidden tubelets predicted, visible ones
kept), video-encoder attention, that attention over the reconstruction, and the image encoder's attention
over each frame. The last column holds the image branch's own input, the sampled frame, with its attention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..models.crossvideomae import CrossVideoMAE
from .attention import image_attention_map, video_attention_map
from .png import save_png
from .reconstruct import denormalise, picture_mask, reconstruct

Norm = tuple[tuple[float, ...], tuple[float, ...]]  # the dataset normalisation: (data.mean, data.std)
ROWS = ("original", "masked", "reconstruction", "attention", "overlay", "image attention")
CELL_INCHES, DPI = 1.3, 100


def heat(maps: torch.Tensor, size: int) -> np.ndarray:
    """Attention maps (..., g, g) -> colour pictures (..., size, size, 3) in [0, 1]; min-max scaled over
    everything passed in, so maps drawn together share one scale."""
    lead = maps.shape[:-2]
    x = maps.float().reshape(-1, 1, *maps.shape[-2:])
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    rgb = colormaps["inferno"](x.cpu().numpy())[..., :3]
    return rgb.reshape(*lead, size, size, 3)


def blend(image: np.ndarray, heat_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (1 - alpha) * image + alpha * heat_rgb


def _hwc(x: torch.Tensor) -> np.ndarray:
    """Images (B, C, H, W) -> (B, H, W, C) numpy."""
    return x.movedim(1, -1).cpu().numpy()


def _thwc(x: torch.Tensor) -> np.ndarray:
    """Clips (B, C, T, H, W) -> frames (B, T, H, W, C) numpy."""
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


@torch.no_grad()
def clip_panels(model: CrossVideoMAE, video: torch.Tensor, image: torch.Tensor, norm: Norm, seed: int = 0):
    """Pictures of one batch, all channels-last in [0, 1].

    video (B, C, T, H, W) and image (B, C, H, W) normalised with ``norm`` (``data.mean``, ``data.std``). Returns ``frames`` (rows, B, T, H, W, 3)
    for the six rows over every frame of the clip and ``sampled`` (2, B, H, W, 3): the sampled frame and its
    image-branch attention overlay. The mask is :func:`picture_mask` of ``seed``.
    """
    mean, std = norm
    B, _, T, H, _ = video.shape
    rec = reconstruct(model, video, picture_mask(model, B, seed))
    original = denormalise(rec.video, mean, std)  # (B, C, T, H, W)
    masked = original * (1 - rec.hidden) + 0.5 * rec.hidden  # hidden tubelets grey
    pasted = denormalise(rec.pasted(), mean, std)

    v_map = video_attention_map(model, video)  # (B, t, h, w)
    v_heat = np.stack([heat(m, H) for m in v_map])  # (B, t, H, W, 3), one scale per clip
    v_heat = np.repeat(v_heat, model.tubelet, axis=1)  # a tubelet's frames share its map
    frames_as_images = video.transpose(1, 2).flatten(0, 1)  # (B*T, C, H, W)
    i_map = image_attention_map(model, frames_as_images).view(B, T, *model.image_encoder.grid[1:])
    i_heat = np.stack([np.stack([heat(m, H) for m in clip]) for clip in i_map])  # (B, T, H, W, 3)

    rows = [_thwc(original), _thwc(masked), _thwc(pasted), v_heat]
    rows.append(blend(rows[2], v_heat))
    rows.append(blend(rows[0], i_heat))
    s_img = _hwc(denormalise(image.float(), mean, std))  # (B, H, W, 3)
    s_heat = np.stack([heat(m, H) for m in image_attention_map(model, image)])
    return np.stack(rows), np.stack([s_img, blend(s_img, s_heat)])


def draw_grid(
    frames: np.ndarray,
    sampled: np.ndarray,
    tubelet: int,
    sampled_slot: list[int],
    frame_ids: list[int] | None = None,
) -> Figure:
    """Lay out :func:`clip_panels` output: one column per time slice (its first frame) + the sampled frame.

    ``sampled_slot`` is each clip's sampled-frame position; ``frame_ids`` (T,) the video frame numbers shown in
    the labels (default: positions in the clip).
    """
    n_rows, B, T = frames.shape[:3]
    ids = frame_ids if frame_ids is not None else list(range(T))
    cols = list(range(0, T, tubelet))
    fig = Figure(figsize=(CELL_INCHES * (len(cols) + 1), CELL_INCHES * n_rows * B), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows * B, len(cols) + 1, squeeze=False)
    for b in range(B):
        for r in range(n_rows):
            row = axes[b * n_rows + r]
            for c, t in enumerate(cols):
                row[c].imshow(frames[r, b, t].clip(0, 1))
            row[0].set_ylabel(ROWS[r] if B == 1 else f"{ROWS[r]} [{b}]", fontsize=7)
            side = {0: sampled[0, b], n_rows - 1: sampled[1, b]}.get(r)
            if side is not None:
                row[-1].imshow(side.clip(0, 1))
        label = f"frame {ids[sampled_slot[b]]}"
        box = {"facecolor": "black", "alpha": 0.6, "pad": 1.5, "linewidth": 0}
        axes[b * n_rows, -1].text(
            0.04,
            0.96,
            label,
            transform=axes[b * n_rows, -1].transAxes,
            fontsize=6,
            color="white",
            va="top",
            bbox=box,
        )
    for c, t in enumerate(cols):
        axes[0, c].set_title(f"frame {ids[t]}", fontsize=7)
    axes[0, -1].set_title("image input", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.01, top=0.97, wspace=0.04, hspace=0.06)
    return fig


def render(fig: Figure) -> np.ndarray:
    """Figure -> (H, W, 3) uint8."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def write_grid(
    frames: np.ndarray,
    sampled: np.ndarray,
    tubelet: int,
    sampled_slot: list[int],
    path: Path,
    frame_ids: list[int] | None = None,
    compact: bool = False,
) -> np.ndarray:
    """Draw :func:`clip_panels` output (see :func:`draw_grid`), write it as a PNG at ``path`` (see
    :func:`save_png` for ``compact``); returns the picture (H, W, 3) uint8."""
    picture = render(draw_grid(frames, sampled, tubelet, sampled_slot, frame_ids))
    save_png(picture, path, compact)
    return picture


def reconstruction_grid(
    model: CrossVideoMAE, batch: dict, path: Path, norm: Norm, max_clips: int = 2, seed: int = 0
) -> np.ndarray:
    """Fig. 1 picture of the first ``max_clips`` clips of a pretraining batch, written to ``path`` (PNG).

    ``norm``: the batch's (``data.mean``, ``data.std``). Uses view 1 (``video1``), the first sampled frame (``images[:, 0]``, ``frame_index1[:, 0]``) and a mask drawn
    from ``seed`` (the same at every epoch); the model's train/eval mode and the global RNG are restored
    afterwards. Returns the picture as (H, W, 3) uint8, e.g. for TensorBoard's ``add_image(..., dataformats="HWC")``.
    """
    model = getattr(model, "module", model)  # DDP wrapper
    device = next(model.parameters()).device
    video = batch["video1"][:max_clips].to(device)
    image = batch["images"][:max_clips, 0].to(device)
    sampled_slot = batch["frame_index1"][:max_clips, 0].tolist()
    was_training = model.training
    model.eval()
    try:
        frames, sampled = clip_panels(model, video, image, norm, seed)
    finally:
        model.train(was_training)
    return write_grid(frames, sampled, model.tubelet, sampled_slot, path)
