"""Official checkpoint layouts (MAE, VideoMAE, SpatioTemporalMAE, timm) load into our modules.

The tests build state dicts with the official key names and shapes (read from facebookresearch/mae
models_mae.py, MCG-NJU/VideoMAE modeling_pretrain.py / modeling_finetune.py and facebookresearch/mae_st
models_mae.py + util/video_vit.py), then compare our loaded modules with a plain re-implementation of the
official forward passes that reads those state dicts directly (position tables ported from the official
numpy code, not from our layers).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crossvideomae.config import Config, MaskConfig, ModelConfig
from crossvideomae.engine.checkpoint import CheckpointError
from crossvideomae.models import CrossVideoMAE, ImageEncoder, VideoEncoder, hidden_mask, make_mask
from crossvideomae.weights import load_pretrained, model_config_from_checkpoint

TOL = 1e-4


# ------------------------------------------------------------------------------- official position tables
def videomae_table(n: int, d: int) -> torch.Tensor:
    """VideoMAE's get_sinusoid_encoding_table."""
    angle = np.arange(n)[:, None] / np.power(10000, 2 * (np.arange(d)[None] // 2) / d)
    angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
    return torch.tensor(angle, dtype=torch.float32)[None]


def mae_table(g: int, d: int) -> torch.Tensor:
    """MAE's get_2d_sincos_pos_embed(d, g, cls_token=True)."""

    def one_d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.stack(np.meshgrid(np.arange(g, dtype=np.float32), np.arange(g, dtype=np.float32)), 0)
    emb = np.concatenate([one_d(d // 2, grid[0]), one_d(d // 2, grid[1])], axis=1)
    return torch.tensor(np.concatenate([np.zeros([1, d]), emb]), dtype=torch.float32)[None]


# ------------------------------------------------------------------------------ official-layout builders
def _r(*shape, std=0.05):
    return torch.randn(*shape) * std


def block_state(prefix: str, width: int, attn: str, bias: bool = True) -> dict[str, torch.Tensor]:
    """One pre-norm block. attn: 'qkv' (MAE / timm / ours), 'qv_bias' (VideoMAE), 'sep' (SpatioTemporalMAE)."""
    sd = {
        f"{prefix}norm1.weight": 1 + _r(width),
        f"{prefix}norm1.bias": _r(width),
        f"{prefix}attn.proj.weight": _r(width, width),
        f"{prefix}attn.proj.bias": _r(width),
        f"{prefix}norm2.weight": 1 + _r(width),
        f"{prefix}norm2.bias": _r(width),
        f"{prefix}mlp.fc1.weight": _r(4 * width, width),
        f"{prefix}mlp.fc1.bias": _r(4 * width),
        f"{prefix}mlp.fc2.weight": _r(width, 4 * width),
        f"{prefix}mlp.fc2.bias": _r(width),
    }
    if attn == "sep":
        for n in "qkv":
            sd[f"{prefix}attn.{n}.weight"] = _r(width, width)
            if bias:
                sd[f"{prefix}attn.{n}.bias"] = _r(width)
    else:
        sd[f"{prefix}attn.qkv.weight"] = _r(3 * width, width)
        if attn == "qv_bias":
            sd[f"{prefix}attn.q_bias"], sd[f"{prefix}attn.v_bias"] = _r(width), _r(width)
        elif bias:
            sd[f"{prefix}attn.qkv.bias"] = _r(3 * width)
    return sd


def videomae_pretrain_state(width, depth, dec, dec_depth, tubelet, patch) -> dict[str, torch.Tensor]:
    sd = {
        "encoder.patch_embed.proj.weight": _r(width, 3, tubelet, patch, patch),
        "encoder.patch_embed.proj.bias": _r(width),
    }
    for i in range(depth):
        sd |= block_state(f"encoder.blocks.{i}.", width, "qv_bias")
    sd |= {"encoder.norm.weight": 1 + _r(width), "encoder.norm.bias": _r(width)}
    sd |= {"encoder_to_decoder.weight": _r(dec, width), "mask_token": _r(1, 1, dec)}
    for i in range(dec_depth):
        sd |= block_state(f"decoder.blocks.{i}.", dec, "qv_bias")
    pixels = 3 * tubelet * patch * patch
    sd |= {"decoder.norm.weight": 1 + _r(dec), "decoder.norm.bias": _r(dec)}
    sd |= {"decoder.head.weight": _r(pixels, dec), "decoder.head.bias": _r(pixels)}
    return sd


def mae_st_state(
    width, depth, dec, dec_depth, t, hw, tubelet, patch, cls=True, pred_t=None
) -> dict[str, torch.Tensor]:
    sd = {"patch_embed.proj.weight": _r(width, 3, tubelet, patch, patch), "patch_embed.proj.bias": _r(width)}
    sd |= {"pos_embed_spatial": _r(1, hw, width), "pos_embed_temporal": _r(1, t, width)}
    sd |= {"decoder_pos_embed_spatial": _r(1, hw, dec), "decoder_pos_embed_temporal": _r(1, t, dec)}
    if cls:
        sd |= {"cls_token": _r(1, 1, width), "pos_embed_class": _r(1, 1, width)}
        sd |= {"decoder_cls_token": _r(1, 1, dec), "decoder_pos_embed_class": _r(1, 1, dec)}
    for i in range(depth):
        sd |= block_state(f"blocks.{i}.", width, "sep")
    sd |= {"norm.weight": 1 + _r(width), "norm.bias": _r(width)}
    sd |= {
        "decoder_embed.weight": _r(dec, width),
        "decoder_embed.bias": torch.zeros(dec),
        "mask_token": _r(1, 1, dec),
    }
    for i in range(dec_depth):
        sd |= block_state(f"decoder_blocks.{i}.", dec, "sep")
    pixels = 3 * (pred_t or tubelet) * patch * patch
    sd |= {"decoder_norm.weight": 1 + _r(dec), "decoder_norm.bias": _r(dec)}
    sd |= {"decoder_pred.weight": _r(pixels, dec), "decoder_pred.bias": _r(pixels)}
    return sd


def mae_state(width, depth, grid, patch, full=False, dec=32) -> dict[str, torch.Tensor]:
    sd = {"cls_token": _r(1, 1, width), "pos_embed": mae_table(grid, width)}
    sd |= {"patch_embed.proj.weight": _r(width, 3, patch, patch), "patch_embed.proj.bias": _r(width)}
    for i in range(depth):
        sd |= block_state(f"blocks.{i}.", width, "qkv")
    sd |= {"norm.weight": 1 + _r(width), "norm.bias": _r(width)}
    if full:  # mae_pretrain_vit_*_full.pth: MAE's image decoder as well
        sd |= {
            "mask_token": _r(1, 1, dec),
            "decoder_embed.weight": _r(dec, width),
            "decoder_embed.bias": _r(dec),
        }
        sd |= {"decoder_pos_embed": mae_table(grid, dec)}
        sd |= block_state("decoder_blocks.0.", dec, "qkv")
        sd |= {"decoder_norm.weight": _r(dec), "decoder_norm.bias": _r(dec)}
        sd |= {"decoder_pred.weight": _r(3 * patch * patch, dec), "decoder_pred.bias": _r(3 * patch * patch)}
    return sd


# ------------------------------------------------------------------------------- official forward passes
def ref_blocks(sd, prefix: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    """timm / VideoMAE / mae_st pre-norm blocks, straight from the state dict."""
    i = 0
    while f"{prefix}{i}.norm1.weight" in sd:
        p = lambda n, i=i: sd.get(f"{prefix}{i}.{n}")  # noqa: E731
        B, N, D = x.shape
        h = F.layer_norm(x, (D,), p("norm1.weight"), p("norm1.bias"), 1e-6)
        if p("attn.qkv.weight") is not None:
            bias = p("attn.qkv.bias")
            if p("attn.q_bias") is not None:  # VideoMAE: q and v biases, no k bias
                bias = torch.cat([p("attn.q_bias"), torch.zeros_like(p("attn.v_bias")), p("attn.v_bias")])
            q, k, v = F.linear(h, p("attn.qkv.weight"), bias).chunk(3, dim=-1)
        else:
            q, k, v = (F.linear(h, p(f"attn.{n}.weight"), p(f"attn.{n}.bias")) for n in "qkv")
        q, k, v = (t.reshape(B, N, heads, D // heads).transpose(1, 2) for t in (q, k, v))
        a = ((q @ k.transpose(-2, -1)) * (D // heads) ** -0.5).softmax(dim=-1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(B, N, D), p("attn.proj.weight"), p("attn.proj.bias"))
        h = F.layer_norm(x, (D,), p("norm2.weight"), p("norm2.bias"), 1e-6)
        x = x + F.linear(
            F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))),
            p("mlp.fc2.weight"),
            p("mlp.fc2.bias"),
        )
        i += 1
    return x


def ref_norm(sd, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-6)


def gather(x, ids):
    return torch.gather(x, 1, ids[..., None].expand(-1, -1, x.shape[-1]))


def tokens3d(sd, key, video):
    w = sd[f"{key}.weight"]
    return F.conv3d(video, w, sd[f"{key}.bias"], stride=w.shape[2:]).flatten(2).transpose(1, 2)  # (B, N, D)


def cfg_with(**model) -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model))


# -------------------------------------------------------------------------------------------------- VideoMAE
def test_videomae_vitb_pretrain_checkpoint(tmp_path):
    """ViT-B/16 VideoMAE pretraining file: config inferred, every encoder tensor placed, features as VideoMAE's."""
    sd = videomae_pretrain_state(768, 12, 384, 4, tubelet=2, patch=16)
    torch.save({"model": sd}, tmp_path / "checkpoint.pth")
    mc = model_config_from_checkpoint(tmp_path / "checkpoint.pth")
    assert (mc.size, mc.patch_size, mc.tubelet_size, mc.pos_embed) == ("base", 16, 2, "sincos")
    assert (mc.embed_dim, mc.decoder_depth, mc.decoder_heads, mc.mlp_ratio) == (384, 4, 6, 4.0)
    enc = VideoEncoder(mc).eval()  # 16 x 224 x 224, the defaults VideoMAE's file cannot tell
    report = load_pretrained(enc, tmp_path / "checkpoint.pth", verbose=False)
    assert report.complete and not report.unexpected and not report.mismatched
    assert len(report.loaded) == 2 + 12 * 12 + 2
    assert any(k.startswith("decoder.") for k in report.skipped) and "video_proj.weight" in report.skipped
    q, v = sd["encoder.blocks.3.attn.q_bias"], sd["encoder.blocks.3.attn.v_bias"]
    assert torch.equal(enc.blocks[3].attn.qkv.bias, torch.cat([q, torch.zeros(768), v]))

    video = torch.randn(1, 3, 16, 224, 224)
    ids = torch.randperm(1568)[:16].sort().values[None]  # 16 visible tubelets keep the ViT-B forward cheap
    with torch.no_grad():
        x = gather(tokens3d(sd, "encoder.patch_embed.proj", video) + videomae_table(1568, 768), ids)
        ref = ref_norm(sd, "encoder.norm", ref_blocks(sd, "encoder.blocks.", x, 12))
        assert (ref - enc.forward_features(video, ids)).abs().max() <= TOL


def test_videomae_pretrain_reconstruction_matches_reference(tmp_path):
    """Small VideoMAE file into a CrossVideoMAE: encoder features and decoder output as VideoMAE computes them."""
    sd = videomae_pretrain_state(64, 2, 32, 2, tubelet=2, patch=8)
    torch.save({"model": sd, "epoch": 3}, tmp_path / "vmae.pth")
    mc = dataclasses.replace(
        model_config_from_checkpoint(tmp_path / "vmae.pth"), img_size=32, num_frames=4, decoder_heads=2
    )
    assert (mc.width, mc.depth, mc.heads) == (
        64,
        2,
        1,
    )  # no standard ViT is 64 wide: 64-channel heads assumed
    mc = dataclasses.replace(mc, heads=4)
    model = CrossVideoMAE(mc, MaskConfig()).eval()
    report = load_pretrained(model, tmp_path / "vmae.pth", "model", verbose=False)
    assert not report.unexpected and not report.mismatched
    assert {k.split(".")[0] for k in report.missing} == {"image_encoder", "image_proj"}

    B, N = 2, 32
    video = torch.randn(B, 3, 4, 32, 32)
    ids = make_mask("random", B, model.grid, 0.75, None)
    hidden = hidden_mask(ids, N)
    with torch.no_grad():
        x = gather(tokens3d(sd, "encoder.patch_embed.proj", video) + videomae_table(N, 64), ids)
        feat = ref_norm(sd, "encoder.norm", ref_blocks(sd, "encoder.blocks.", x, 4))
        # VideoMAE's decoder: [visible + pos_visible, mask_token + pos_hidden], prediction of the hidden tokens
        e = F.linear(feat, sd["encoder_to_decoder.weight"])
        pos = videomae_table(N, 32).expand(B, -1, -1)
        n_hid = N - ids.shape[1]
        full = torch.cat(
            [e + pos[~hidden].reshape(B, -1, 32), sd["mask_token"] + pos[hidden].reshape(B, n_hid, 32)], 1
        )
        y = ref_norm(sd, "decoder.norm", ref_blocks(sd, "decoder.blocks.", full, 2)[:, -n_hid:])
        ref_pred = F.linear(y, sd["decoder.head.weight"], sd["decoder.head.bias"])

        ours = model.video_encoder.forward_features(video, ids)
        pred = model.decoder(model.video_proj(ours), ids)[hidden].reshape(B, n_hid, -1)
    assert (feat - ours).abs().max() <= TOL
    assert (ref_pred - pred).abs().max() <= TOL


def test_videomae_finetune_checkpoint(tmp_path):
    """Fine-tuned VideoMAE: `module` container, `backbone.` prefix, fc_norm instead of norm, a classifier head."""
    sd = {"patch_embed.proj.weight": _r(64, 3, 2, 8, 8), "patch_embed.proj.bias": _r(64)}
    for i in range(2):
        sd |= block_state(f"blocks.{i}.", 64, "qv_bias")
    sd |= {
        "fc_norm.weight": 1 + _r(64),
        "fc_norm.bias": _r(64),
        "head.weight": _r(400, 64),
        "head.bias": _r(400),
    }
    torch.save({"module": {f"backbone.{k}": v for k, v in sd.items()}}, tmp_path / "ft.pth")
    enc = VideoEncoder(
        ModelConfig(size="tiny", width=64, depth=2, heads=4, img_size=32, num_frames=4, patch_size=8)
    )
    report = load_pretrained(enc, tmp_path / "ft.pth", verbose=False)
    assert report.complete and not report.unexpected
    assert sorted(report.skipped) == ["head.bias", "head.weight"]
    assert torch.equal(enc.norm.weight, sd["fc_norm.weight"])
    assert any("fc_norm" in n for n in report.notes)
    assert "module" in report.source


# ------------------------------------------------------------------------------------------ SpatioTemporalMAE
def test_mae_st_matches_reference_without_cls(tmp_path):
    """SpatioTemporalMAE without cls token: separate q / k / v and separable tables give its exact forward."""
    T, t, hw, B = 4, 2, 16, 2
    sd = mae_st_state(64, 2, 32, 1, t=t, hw=hw, tubelet=2, patch=8, cls=False)
    torch.save({"model_state": sd}, tmp_path / "st.pyth")
    mc = model_config_from_checkpoint(tmp_path / "st.pyth")
    assert (mc.pos_embed, mc.img_size, mc.num_frames, mc.decoder_heads) == ("separable", 32, T, 16)
    mc = dataclasses.replace(mc, heads=4, decoder_heads=2)
    model = CrossVideoMAE(mc, MaskConfig()).eval()
    report = load_pretrained(model, tmp_path / "st.pyth", "model", verbose=False)
    assert not report.unexpected and not report.mismatched
    assert sorted(report.skipped) == ["decoder_embed.bias"]

    video = torch.randn(B, 3, T, 32, 32)
    ids = make_mask("random", B, model.grid, 0.5, None)
    hidden = hidden_mask(ids, t * hw)
    with torch.no_grad():
        # mae_st: pos = spatial.repeat(1, t, 1) + repeat_interleave(temporal, h*w)
        pos = sd["pos_embed_spatial"].repeat(1, t, 1) + torch.repeat_interleave(
            sd["pos_embed_temporal"], hw, dim=1
        )
        x = gather(tokens3d(sd, "patch_embed.proj", video) + pos, ids)
        feat = ref_norm(sd, "norm", ref_blocks(sd, "blocks.", x, 4))
        e = F.linear(feat, sd["decoder_embed.weight"], sd["decoder_embed.bias"])
        full = sd["mask_token"].expand(B, t * hw, -1).clone()
        full[~hidden] = e.reshape(-1, 32)  # mae_st un-shuffles visible tokens back to their places
        dpos = sd["decoder_pos_embed_spatial"].repeat(1, t, 1) + torch.repeat_interleave(
            sd["decoder_pos_embed_temporal"], hw, dim=1
        )
        y = ref_norm(sd, "decoder_norm", ref_blocks(sd, "decoder_blocks.", full + dpos, 2))
        ref_pred = F.linear(y, sd["decoder_pred.weight"], sd["decoder_pred.bias"])
        ours = model.video_encoder.forward_features(video, ids)
        pred = model.decoder(model.video_proj(ours), ids)
    assert (feat - ours).abs().max() <= TOL
    assert (ref_pred - pred).abs().max() <= TOL


def test_mae_st_vitb_with_cls_resized(tmp_path):
    """ViT-B/16 SpatioTemporalMAE (16 x 224, cls token) into a 8 x 112 encoder: learned tables interpolated."""
    sd = mae_st_state(768, 12, 512, 1, t=8, hw=196, tubelet=2, patch=16, cls=True, pred_t=1)
    torch.save({"model": sd}, tmp_path / "mae_st_vitb.pth")
    mc = model_config_from_checkpoint(tmp_path / "mae_st_vitb.pth")
    assert (mc.size, mc.pos_embed, mc.img_size, mc.num_frames) == ("base", "separable", 224, 16)
    enc = VideoEncoder(dataclasses.replace(mc, img_size=112, num_frames=8))
    report = load_pretrained(enc, tmp_path / "mae_st_vitb.pth", "video", verbose=False)
    assert report.complete and not report.unexpected
    assert {"cls_token", "pos_embed_class"} <= set(report.skipped)
    assert any("cls token" in n for n in report.notes)
    assert enc.pos_embed_spatial.shape == (1, 49, 768) and enc.pos_embed_temporal.shape == (1, 4, 768)
    grid = sd["pos_embed_spatial"].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)
    expect = (
        F.interpolate(grid, size=(7, 7), mode="bicubic", align_corners=False)
        .permute(0, 2, 3, 1)
        .reshape(1, 49, 768)
    )
    assert torch.allclose(enc.pos_embed_spatial, expect)
    expect_t = F.interpolate(sd["pos_embed_temporal"].transpose(1, 2), size=4, mode="linear").transpose(1, 2)
    assert torch.allclose(enc.pos_embed_temporal, expect_t)
    q, k, v = (sd[f"blocks.11.attn.{n}.weight"] for n in "qkv")
    assert torch.equal(enc.blocks[11].attn.qkv.weight, torch.cat([q, k, v]))


def test_mae_st_into_sincos_encoder_says_why(tmp_path):
    sd = mae_st_state(64, 1, 32, 1, t=2, hw=16, tubelet=2, patch=8, cls=False)
    torch.save({"model": sd}, tmp_path / "st.pth")
    enc = VideoEncoder(
        ModelConfig(size="tiny", width=64, depth=1, heads=4, img_size=32, num_frames=4, patch_size=8)
    )
    report = load_pretrained(enc, tmp_path / "st.pth", verbose=False)
    assert "pos_embed_spatial" in report.unexpected
    assert any("model.pos_embed=separable" in n for n in report.notes)


# ------------------------------------------------------------------------------------------------ MAE / timm
@pytest.mark.parametrize("full", [False, True])
def test_mae_vitb_checkpoint(tmp_path, full):
    """mae_pretrain_vit_base(_full).pth: the image encoder loads whole, MAE's image decoder is skipped."""
    sd = mae_state(768, 12, 14, 16, full=full)
    torch.save({"model": sd}, tmp_path / "mae.pth")
    mc = model_config_from_checkpoint(tmp_path / "mae.pth")
    assert (mc.size, mc.img_size, mc.patch_size) == ("base", 224, 16)
    enc = ImageEncoder(mc).eval()
    report = load_pretrained(enc, tmp_path / "mae.pth", verbose=False)
    assert report.complete and not report.unexpected
    assert any("pos_embed" in n and "regenerated" in n for n in report.notes)
    assert ("decoder_pred.weight" in report.skipped) == full
    images = torch.randn(2, 3, 224, 224)
    ids = torch.rand(2, 196).argsort(1)[:, :20]
    with torch.no_grad():
        pos = sd["pos_embed"]
        w = sd["patch_embed.proj.weight"]
        x = (
            F.conv2d(images, w, sd["patch_embed.proj.bias"], stride=16).flatten(2).transpose(1, 2)
            + pos[:, 1:]
        )
        x = torch.cat([(sd["cls_token"] + pos[:, :1]).expand(2, -1, -1), gather(x, ids)], 1)
        ref = ref_norm(sd, "norm", ref_blocks(sd, "blocks.", x, 12))
        assert (ref - enc.forward_features(images, ids)).abs().max() <= TOL


def test_timm_vit_with_learned_positions(tmp_path):
    """timm ViT weights (safetensors, timm key names): blocks load; a learned position table is reported unusable."""
    from safetensors.torch import save_file

    sd = mae_state(64, 2, 4, 8)
    sd["pos_embed"] = _r(1, 17, 64)  # a supervised timm ViT learns its table
    sd |= {"head.weight": _r(10, 64), "head.bias": _r(10)}
    save_file(sd, str(tmp_path / "model.safetensors"))
    enc = ImageEncoder(ModelConfig(size="tiny", width=64, depth=2, heads=4, img_size=32, patch_size=8))
    report = load_pretrained(enc, tmp_path / "model.safetensors", verbose=False)
    assert report.complete and report.unexpected == ["pos_embed"]
    assert any("learned table" in n for n in report.notes)
    assert torch.equal(enc.blocks[1].attn.qkv.weight, sd["blocks.1.attn.qkv.weight"])


def test_wrong_modality_is_an_error(tmp_path):
    torch.save({"model": mae_state(64, 1, 4, 8)}, tmp_path / "mae.pth")
    enc = VideoEncoder(
        ModelConfig(size="tiny", width=64, depth=1, heads=4, img_size=32, num_frames=4, patch_size=8)
    )
    with pytest.raises(CheckpointError, match="mae.pth.*video encoder.*image_encoder"):
        load_pretrained(enc, tmp_path / "mae.pth", verbose=False)
    with pytest.raises(ValueError, match="VideoEncoder"):
        load_pretrained(enc, tmp_path / "mae.pth", "image", verbose=False)


def test_mae_st_decoder_predicting_fewer_frames_is_a_shape_mismatch(tmp_path):
    """mae_st with pred_t_dim < num_frames predicts one frame per tubelet: its head cannot be ours."""
    sd = mae_st_state(64, 1, 32, 1, t=2, hw=16, tubelet=2, patch=8, cls=False, pred_t=1)
    torch.save({"model": sd}, tmp_path / "st.pth")
    mc = dataclasses.replace(model_config_from_checkpoint(tmp_path / "st.pth"), heads=4, decoder_heads=2)
    model = CrossVideoMAE(mc, MaskConfig())
    report = load_pretrained(model, tmp_path / "st.pth", "model", verbose=False)
    assert report.mismatched == [
        "decoder.head.weight: checkpoint (192, 32) vs model (384, 32)",
        "decoder.head.bias: checkpoint (192,) vs model (384,)",
    ]
    assert "decoder.head.weight" not in report.missing and not report.complete
    assert "shape mismatch (2)" in str(report)
