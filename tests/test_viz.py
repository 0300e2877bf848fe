"""Pictures: un-normalisation, attention maps, Fig. 1 grid, loss curves, animations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import TINY
from PIL import Image

from crossvideomae.config import load_config
from crossvideomae.models import build_model
from crossvideomae.models.crossvideomae import CrossVideoMAE
from crossvideomae.viz import (
    denormalise,
    image_attention_map,
    plot_losses,
    read_metrics,
    reconstruct,
    reconstruction_grid,
    video_attention_map,
    write_animation,
)
from crossvideomae.viz.attention import last_block_attention
from crossvideomae.viz.grid import CELL_INCHES, DPI, ROWS
from crossvideomae.viz.losses import curve_keys


class TargetDecoder(nn.Module):
    """A decoder "replaced by the identity": it returns the model's own normalised targets of the clip."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target

    def forward(self, emb: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        return self.target


NORM = (load_config(None, TINY).data.mean, load_config(None, TINY).data.std)


def tiny_model(*overrides: str) -> CrossVideoMAE:
    cfg = load_config(None, [*TINY, *overrides])
    model = build_model(cfg).eval()
    model.test_cfg = cfg  # the config the helpers below read
    return model


def clip_in_unit_range(model: CrossVideoMAE, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A raw clip in [0, 1] and the same clip after the dataset normalisation."""
    m = model.test_cfg.model
    raw = torch.rand(batch, 3, m.num_frames, m.img_size, m.img_size)
    mean = torch.tensor(model.test_cfg.data.mean).view(1, 3, 1, 1, 1)
    std = torch.tensor(model.test_cfg.data.std).view(1, 3, 1, 1, 1)
    return raw, (raw - mean) / std


def pretraining_batch(model: CrossVideoMAE, batch: int = 2) -> dict:
    m = model.test_cfg.model
    _, video = clip_in_unit_range(model, batch)
    index = torch.arange(batch)[:, None] % m.num_frames
    return {
        "video1": video,
        "video2": video.flip(2),
        "images": video[:, :, 1].unsqueeze(1),
        "frame_index1": index,
        "frame_index2": index,
    }


@pytest.mark.parametrize("norm_pix", ["patch", "channel", "none"])
@pytest.mark.parametrize("masked", [False, True])
def test_identity_decoder_gives_back_the_input(norm_pix, masked):
    model = tiny_model(f"loss.norm_pix={norm_pix}")
    raw, video = clip_in_unit_range(model)
    model.decoder = TargetDecoder(model.targets(video))
    n = video.shape[0]
    ids_keep = torch.arange(model.video_encoder.num_tokens).expand(n, -1) if not masked else None
    rec = reconstruct(model, video, ids_keep)
    assert rec.pred.shape == video.shape
    torch.testing.assert_close(rec.pred, video, atol=1e-4, rtol=1e-4)
    pixels = denormalise(rec.pred, model.test_cfg.data.mean, model.test_cfg.data.std)
    torch.testing.assert_close(pixels, raw, atol=1e-4, rtol=0)
    # hidden share matches the configured ratio when masked, nothing hidden otherwise
    expected = model.mask_cfg.video_ratio if masked else 0.0
    assert rec.hidden.mean().item() == pytest.approx(expected, abs=1 / model.video_encoder.num_tokens)
    torch.testing.assert_close(rec.pasted(), video, atol=1e-4, rtol=1e-4)


def test_reconstruction_pastes_visible_tubelets_and_predicts_hidden_ones():
    model = tiny_model()
    _, video = clip_in_unit_range(model)
    rec = reconstruct(model, video)
    visible = rec.hidden == 0
    pasted = rec.pasted()
    assert torch.equal(
        pasted.masked_select(visible.expand_as(video)), video.masked_select(visible.expand_as(video))
    )
    hidden = ~visible.expand_as(video)
    assert not torch.allclose(pasted.masked_select(hidden), video.masked_select(hidden))


def test_attention_maps_are_distributions():
    model = tiny_model()
    _, video = clip_in_unit_range(model, batch=3)
    v = video_attention_map(model, video)
    assert v.shape == (3, *model.grid)
    assert (v >= 0).all()
    torch.testing.assert_close(v.flatten(1).sum(1), torch.ones(3))
    i = image_attention_map(model, video[:, :, 0])
    g = model.image_encoder.grid[1]
    assert i.shape == (3, g, g)
    assert (i >= 0).all()
    torch.testing.assert_close(i.flatten(1).sum(1), torch.ones(3))


def test_hooked_attention_matches_timm_eager_softmax():
    """Independent reference: timm's non-fused attention path passes its softmax through ``attn_drop``."""
    model = tiny_model()
    _, video = clip_in_unit_range(model)
    enc = model.video_encoder
    ours = last_block_attention(enc, lambda: enc.forward_features(video))  # (B, N, N)
    attn = enc.blocks[-1].attn
    seen = []
    handle = attn.attn_drop.register_forward_hook(lambda mod, args, out: seen.append(out))
    attn.fused_attn = False
    with torch.no_grad():
        enc.forward_features(video)
    handle.remove()
    torch.testing.assert_close(ours, seen[0].mean(dim=1), atol=1e-6, rtol=1e-5)


def test_hook_is_removed_and_sdpa_path_untouched():
    model = tiny_model()
    _, video = clip_in_unit_range(model)
    video_attention_map(model, video)
    assert not model.video_encoder.blocks[-1]._forward_pre_hooks
    assert model.video_encoder.blocks[-1].attn.fused_attn


def test_reconstruction_grid_size_and_state(tmp_path):
    model = tiny_model().train()
    batch = pretraining_batch(model, batch=3)
    rng = torch.get_rng_state()
    picture = reconstruction_grid(model, batch, tmp_path / "grid.png", NORM, max_clips=2)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    t = model.grid[0]
    expected = (round(CELL_INCHES * DPI * len(ROWS) * 2), round(CELL_INCHES * DPI * (t + 1)), 3)
    assert picture.shape == expected and picture.dtype == np.uint8
    with Image.open(tmp_path / "grid.png") as png:
        assert png.size == (expected[1], expected[0])
        assert np.array_equal(np.asarray(png.convert("RGB")), picture)
    assert picture.std() > 10  # not a blank canvas
    again = reconstruction_grid(model, batch, tmp_path / "again.png", NORM, max_clips=2)
    assert np.array_equal(picture, again)  # fixed picture mask: epochs are comparable


def test_plot_losses(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        json.dumps({"step": s, "epoch": s // 10, "lr": 1e-3, "intra": 2.0 - s / 50, "total": 3.0 - s / 50})
        for s in range(30)
    ]
    lines.append(
        json.dumps({"step": 30, "epoch": 3, "lr": 1e-3, "intra": float("nan"), "total": 2.0, "rl": 0.5})
    )
    metrics.write_text("\n".join(lines) + '\n{"step": 31, "tot')  # torn last line from a killed run
    rows = read_metrics(metrics)
    assert len(rows) == 31
    assert curve_keys(rows) == ["total", "intra", "rl", "lr"]
    out = plot_losses(metrics, tmp_path / "curves" / "losses.png")
    with Image.open(out) as png:
        assert png.size == (round(3.2 * 3 * 100), round(2.4 * 2 * 100))  # 4 panels: 3 columns x 2 rows
        assert png.mode == "RGB"
    with Image.open(plot_losses(metrics, tmp_path / "small.png", compact=True)) as png:
        assert png.mode == "P" and png.size == (960, 480)
    assert (tmp_path / "small.png").stat().st_size < out.stat().st_size


def test_plot_losses_refuses_empty(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="no numeric terms"):
        plot_losses(tmp_path / "metrics.jsonl", tmp_path / "losses.png")


def test_animation(tmp_path):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (12, 3)) / 255  # few colours: the GIF palette holds them exactly
    clip = colours[rng.integers(0, 12, (5, 16, 20))]  # (T, H, W, 3)
    out = write_animation([clip, clip[::-1], clip], tmp_path / "clip.gif", scale=2, gap=2)
    with Image.open(out) as gif:
        assert gif.n_frames == 5
        assert gif.size == (2 * (3 * 20 + 2 * 2), 2 * 16)
        gif.seek(3)
        frame = np.asarray(gif.convert("RGB")).astype(int)
    expected = np.round(clip[3] * 255).astype(int).repeat(2, 0).repeat(2, 1)
    assert np.array_equal(frame[:, :40], expected)  # first panel, frame 3
    assert np.array_equal(frame[:, 44:84], np.round(clip[1] * 255).astype(int).repeat(2, 0).repeat(2, 1))
    assert (frame[:, 40:44] == 255).all()  # white gap between panels
