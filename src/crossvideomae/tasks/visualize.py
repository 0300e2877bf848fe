"""``crossvideomae visualize``: the paper's Fig. 1 for one video through a pretrained CrossVideoMAE.

Writes into the output folder:

- ``fig1.png``: original frames, masked frames, reconstruction, video-encoder attention, that attention over
  the reconstruction, and the image encoder's attention (one column per time slice, plus the sampled frame);
- ``clip.gif``: original | masked | reconstruction | attention overlay, every frame of the clip.

The clip is the test-time view (short side to the model's input size, centre crop) of T frames at
``data.frame_stride``, centred in the video unless ``--start`` is given; the sampled frame is the middle one.
The config comes from the checkpoint when it holds one (ours do: the weights need their architecture, the
decoder its ``loss.norm_pix``, the pictures its ``data.mean``/``std``), with the command line's ``key=value``
overrides on top, e.g. ``mask.video_ratio=0.75``. For other files (a bare state dict, VideoMAE, MAE-ST, Hugging
Face) ``--config`` and the overrides must describe the model; :func:`load_pretrained` maps the weights and
reports what did not fit. The video branch and decoder must come whole from the file (else the command
stops); an image branch the file lacks (e.g. a VideoMAE checkpoint) keeps its random initial values, is listed
in the results (``weights_missing``) and makes the image-attention row meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from ..config import Config, from_dict, save_config
from ..data.decode import open_video
from ..data.sampling import centre_start, clip_ids
from ..data.transforms import EvalTransforms
from ..engine.checkpoint import CheckpointError, load_checkpoint
from ..models import build_model
from ..viz.animation import write_animation
from ..viz.grid import clip_panels, write_grid
from ..weights import load_pretrained


def add_arguments(parser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="full CrossVideoMAE checkpoint, e.g. RUN/checkpoint-last.pth"
    )
    parser.add_argument("--video", required=True, help="video file to show")
    parser.add_argument(
        "--start", type=int, default=-1, help="first frame of the clip (default: the centred clip)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mask shown")
    parser.add_argument("--fps", type=int, default=4, help="frames per second of clip.gif")
    parser.add_argument(
        "--compact", action="store_true", help="256-colour PNG, about 4x smaller (for web pages)"
    )


def saved_config(path: str) -> dict | None:
    """The run config stored in one of our checkpoints (``checkpoint-*.pth``), None for any other file or folder."""
    p = Path(path)
    if not p.is_file() or p.suffix == ".safetensors":
        return None
    ckpt = load_checkpoint(p)
    return ckpt.get("config") if isinstance(ckpt, dict) else None


def checkpoint_config(cfg: Config, saved: dict | None, overrides: list[str]) -> Config:
    """The checkpoint's own config with the command-line overrides on top; ``cfg`` when it holds none."""
    if not saved:
        return cfg
    node = OmegaConf.merge(OmegaConf.create(saved), OmegaConf.from_dotlist(overrides))
    return from_dict(OmegaConf.to_container(node))


def read_clip(path: str, cfg: Config, start: int) -> tuple[torch.Tensor, list[int]]:
    """Normalised test-time clip (3, T, S, S) and the video frame ids it shows."""
    m = cfg.model
    with open_video(path, backend=cfg.data.backend, short_side=m.img_size) as reader:
        n = reader.info.num_frames
        start = centre_start(n, m.num_frames, cfg.data.frame_stride) if start < 0 else start
        ids = clip_ids(start, m.num_frames, cfg.data.frame_stride, n)
        frames = reader.frames(ids)  # (T, H, W, 3) uint8
    clip = EvalTransforms(cfg.data, m.img_size).test(frames.permute(0, 3, 1, 2), num_crops=1)[0]
    return clip, [int(i) for i in ids]


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    cfg = checkpoint_config(cfg, saved_config(args.checkpoint), args.overrides)
    save_config(cfg, out_dir / "config.yaml")  # the config the pictures were made with
    model = build_model(cfg)
    report = load_pretrained(model, args.checkpoint, kind="model")
    video_branch = ("video_encoder.", "video_proj.", "decoder.")
    if report.mismatched or any(k.startswith(video_branch) for k in report.missing):
        raise CheckpointError(
            f"{args.checkpoint}: the video encoder and decoder must load whole; check --config and the overrides "
            f"(a full checkpoint-*.pth of a pretraining run carries its own config):\n{report}"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()

    clip, ids = read_clip(args.video, cfg, args.start)
    T, S = clip.shape[1], clip.shape[-1]
    slot = T // 2  # the sampled frame: the middle of the clip
    video = clip[None].to(device)  # (1, 3, T, S, S)
    frames, sampled = clip_panels(
        model, video, video[:, :, slot], (cfg.data.mean, cfg.data.std), args.seed
    )  # (rows, 1, T, S, S, 3)
    grid = out_dir / "fig1.png"
    write_grid(frames, sampled, model.tubelet, [slot], grid, frame_ids=ids, compact=args.compact)
    # original | masked | reconstruction | attention over the reconstruction; small clips enlarged
    gif = write_animation(
        [frames[r, 0] for r in (0, 1, 2, 4)], out_dir / "clip.gif", args.fps, scale=max(1, 128 // S)
    )
    return {
        "grid": str(grid),
        "animation": str(gif),
        "checkpoint": str(args.checkpoint),
        "video": str(args.video),
        "frames": ids,
        "sampled_frame": ids[slot],
        "video_mask_ratio": cfg.mask.video_ratio,
        "mask_seed": args.seed,
        "weights_missing": report.missing,  # parts left at their random initial values
    }
