"""Hugging Face equivalence: VideoMAE / ViTMAE models converted to ours compute the same numbers (fp32, CPU).

The Hugging Face models are independent implementations of VideoMAE and MAE, so agreement checks our key
mapping, fused attention, position tables and decoder ordering at once. Their configs are set to match ours:
LayerNorm eps 1e-6 (HF's default is 1e-12) and ``use_mean_pooling=False`` (the per-token final norm).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import (
    VideoMAEConfig,
    VideoMAEForPreTraining,
    VideoMAEModel,
    ViTMAEConfig,
    ViTMAEModel,
)

from crossvideomae.config import Config
from crossvideomae.models import (
    CrossVideoMAE,
    ImageEncoder,
    VideoEncoder,
    build_model,
    hidden_mask,
    make_mask,
)
from crossvideomae.weights import (
    export_hf_videomae,
    load_pretrained,
    model_config_from_checkpoint,
)

TOL = 1e-4

HF_ENCODER = dict(
    image_size=32,
    patch_size=8,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=256,
    layer_norm_eps=1e-6,
)
HF_VIDEO = HF_ENCODER | dict(
    num_frames=4,
    tubelet_size=2,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=128,
    use_mean_pooling=False,
)


def _randomise(module: torch.nn.Module, std: float = 0.2) -> None:
    """Every parameter random (biases, LayerNorms and the mask token too), so no mapping error hides behind 0 / 1."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)


@pytest.fixture
def hf_videomae(tmp_path):
    hf = VideoMAEForPreTraining(VideoMAEConfig(**HF_VIDEO)).eval()
    _randomise(hf)
    # HF builds its decoder's final LayerNorm with eps 1e-5 whatever the config says; VideoMAE and ours use 1e-6.
    hf.decoder.norm.eps = 1e-6
    hf.save_pretrained(tmp_path / "hf")
    return hf, tmp_path / "hf"


def _ours_from(path) -> CrossVideoMAE:
    mc = model_config_from_checkpoint(path)
    cfg = dataclasses.replace(Config(), model=mc)
    model = build_model(cfg).eval()
    report = load_pretrained(model, path, "model", verbose=False)
    assert not report.unexpected and not report.mismatched
    assert all(
        k.startswith(("image_encoder.", "image_proj.")) for k in report.missing
    )  # HF has no image branch
    return model


def test_hf_videomae_pretraining_equals_ours(hf_videomae):
    hf, path = hf_videomae
    ours = _ours_from(path)
    assert ours.grid == (2, 4, 4) and ours.video_encoder.heads == 4 and ours.model_cfg.decoder_heads == 2
    B, N = 3, 32
    video = torch.randn(B, 3, 4, 32, 32)
    ids_keep = make_mask("random", B, ours.grid, 0.75, None)  # (B, 8) sorted
    hidden = hidden_mask(ids_keep, N)
    with torch.no_grad():
        hf_feat = hf.videomae(video.transpose(1, 2), bool_masked_pos=hidden).last_hidden_state  # (B, 8, 64)
        hf_pred = hf(
            video.transpose(1, 2), bool_masked_pos=hidden
        ).logits  # (B, 24, P), hidden tokens in order
        feat = ours.video_encoder.forward_features(video, ids_keep)
        pred = ours.decoder(ours.video_proj(feat), ids_keep)  # (B, N, P)
    assert hf_feat.shape == feat.shape
    assert (hf_feat - feat).abs().max() <= TOL
    pred_hidden = pred[hidden].reshape(B, N - ids_keep.shape[1], -1)
    assert hf_pred.shape == pred_hidden.shape
    assert (hf_pred - pred_hidden).abs().max() <= TOL
    # the full clip without masking: VideoMAEModel's mean-pooled feature is our forward()
    with torch.no_grad():
        full = hf.videomae(video.transpose(1, 2)).last_hidden_state.mean(1)
        assert (full - ours.video_encoder(video)).abs().max() <= TOL


def test_hf_videomae_model_into_video_encoder(hf_videomae):
    hf, path = hf_videomae
    encoder = VideoEncoder(model_config_from_checkpoint(path)).eval()
    report = load_pretrained(encoder, path, verbose=False)
    assert report.complete and not report.unexpected
    assert any(k.startswith("decoder.") for k in report.skipped)  # the decoder is not part of an encoder
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = hf.videomae(video.transpose(1, 2)).last_hidden_state
        assert (ref - encoder.forward_features(video)).abs().max() <= TOL


def test_hf_vitmae_equals_image_encoder(tmp_path):
    hf = ViTMAEModel(ViTMAEConfig(**HF_ENCODER, mask_ratio=0.75)).eval()
    # transformers 5 leaves the table at zero in a fresh model (it is filled when loading): fill it the way HF does
    hf.embeddings.patch_embeddings.projection._is_hf_initialized = False
    hf.embeddings.initialize_weights()
    table = hf.embeddings.position_embeddings.detach().clone()  # HF's own MAE 2-D sin-cos table
    assert table.abs().sum() > 0
    _randomise(hf)
    with torch.no_grad():
        hf.embeddings.position_embeddings.copy_(table)
    hf.save_pretrained(tmp_path / "vitmae")
    mc = model_config_from_checkpoint(tmp_path / "vitmae")
    assert (mc.img_size, mc.patch_size, mc.heads or 0) == (32, 8, 4)
    ours = ImageEncoder(mc).eval()
    report = load_pretrained(ours, tmp_path / "vitmae", verbose=False)
    assert report.complete and not report.unexpected
    assert any("regenerated" in n for n in report.notes)  # HF's stored table is our fixed one
    assert torch.allclose(ours.pos_embed, table, atol=1e-6)

    images = torch.randn(3, 3, 32, 32)
    noise = torch.rand(3, 16)  # ViTMAE keeps the 4 lowest-noise patches, in noise order
    ids_keep = noise.argsort(dim=1)[:, :4]
    with torch.no_grad():
        ref = hf(images, noise=noise).last_hidden_state  # (3, 1 + 4, 64)
        out = ours.forward_features(images, ids_keep)
    assert ref.shape == out.shape
    assert (ref - out).abs().max() <= TOL


def _tiny_model() -> CrossVideoMAE:
    cfg = Config()
    m = dataclasses.replace(
        cfg.model, size="tiny", width=64, depth=2, heads=4, img_size=32, num_frames=4, patch_size=8,
        embed_dim=32, decoder_depth=2, decoder_heads=2,
    )  # fmt: skip
    model = CrossVideoMAE(m, cfg.mask).eval()
    _randomise(model)
    with (
        torch.no_grad()
    ):  # our k bias cannot change attention and HF VideoMAE has none: make the round trip exact
        for name, p in model.named_parameters():
            if name.endswith("attn.qkv.bias"):
                p[p.shape[0] // 3 : 2 * p.shape[0] // 3] = 0
    return model


def test_ours_to_hf_to_ours_is_exact(tmp_path):
    model = _tiny_model()
    export_hf_videomae(model, model.model_cfg, tmp_path / "hf")
    hf = VideoMAEForPreTraining.from_pretrained(tmp_path / "hf").eval()
    hf.decoder.norm.eps = 1e-6
    hf.save_pretrained(tmp_path / "hf2")  # rewritten by transformers itself
    back = CrossVideoMAE(model.model_cfg, model.mask_cfg)
    report = load_pretrained(back, tmp_path / "hf2", "model", verbose=False)
    assert not report.mismatched and not report.unexpected
    video_side = ("video_encoder.", "video_proj.", "decoder.")
    theirs = back.state_dict()
    for k, v in model.state_dict().items():
        if k.startswith(video_side):
            assert torch.equal(v, theirs[k]), k

    # and the Hugging Face model computes what ours does
    video = torch.randn(2, 3, 4, 32, 32)
    ids_keep = make_mask("random", 2, model.grid, 0.5, None)
    hidden = hidden_mask(ids_keep, 32)
    with torch.no_grad():
        feat = model.video_encoder.forward_features(video, ids_keep)
        pred = model.decoder(model.video_proj(feat), ids_keep)[hidden].reshape(2, 16, -1)
        assert (
            hf.videomae(video.transpose(1, 2), bool_masked_pos=hidden).last_hidden_state - feat
        ).abs().max() <= TOL
        assert (hf(video.transpose(1, 2), bool_masked_pos=hidden).logits - pred).abs().max() <= TOL


def test_video_encoder_export_loads_in_videomae_model(tmp_path):
    model = _tiny_model()
    with torch.no_grad():  # a non-zero k bias is dropped on export, and must not change the features
        model.video_encoder.blocks[0].attn.qkv.bias[64:128].normal_()
    export_hf_videomae(model.video_encoder, model.model_cfg, tmp_path / "enc")
    hf = VideoMAEModel.from_pretrained(tmp_path / "enc").eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model.video_encoder(video)  # mean-pooled clip feature
        assert (hf(video.transpose(1, 2)).last_hidden_state.mean(1) - ref).abs().max() <= TOL


def test_hf_export_refuses_learned_positions(tmp_path):
    cfg = Config()
    m = dataclasses.replace(
        cfg.model, size="tiny", depth=1, img_size=32, num_frames=4, patch_size=8, pos_embed="separable"
    )
    from crossvideomae.engine.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="sin-cos"):
        export_hf_videomae(VideoEncoder(m), m, tmp_path / "x")
