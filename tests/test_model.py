import pytest
import torch

from crossvideomae.config import load_config
from crossvideomae.layers import sincos_1d
from crossvideomae.models import (
    build_model,
    build_video_encoder,
    make_mask,
    num_visible,
    patchify,
    slice_mean,
    unpatchify,
)


def test_vitb_token_count_is_1568():
    cfg = load_config("vitb_k400")
    enc = build_video_encoder(cfg.model)
    assert enc.grid == (8, 14, 14) and enc.num_tokens == 1568
    assert enc.patch_embed(torch.zeros(1, 3, 16, 224, 224)).shape == (1, 1568, 768)


def test_patchify_round_trip_and_layout():
    video = torch.randn(2, 3, 4, 32, 48)
    x = patchify(video, tubelet=2, patch=16)
    assert x.shape == (2, 2 * 2 * 3, 2 * 16 * 16 * 3)
    assert torch.equal(unpatchify(x, (2, 2, 3), 2, 16), video)
    # token 0 = frames 0-1, rows 0-15, cols 0-15; pixel order (t, h, w, c) inside the token
    assert torch.equal(x[0, 0, :3], video[0, :, 0, 0, 0])
    assert torch.equal(x[0, 1].view(2, 16, 16, 3)[1, 2, 5], video[0, :, 1, 2, 16 + 5])


def test_sincos_table_matches_videomae_formula():
    table = sincos_1d(10, 8)[0].double()
    for pos in (0, 3, 9):
        for j in range(8):
            angle = pos / 10000 ** (2 * (j // 2) / 8)
            expected = torch.sin(torch.tensor(angle)) if j % 2 == 0 else torch.cos(torch.tensor(angle))
            assert abs(table[pos, j] - expected) < 1e-6


@pytest.mark.parametrize("kind", ["random", "tube", "frame"])
@pytest.mark.parametrize("ratio", [0.5, 0.9, 0.95])
def test_mask_ratio_exact_per_sample(kind, ratio):
    grid = (8, 14, 14)
    ids = make_mask(kind, 6, grid, ratio)
    n = num_visible(grid, ratio, kind)
    assert ids.shape == (6, n)
    for row in ids:
        assert len(set(row.tolist())) == n  # distinct tokens
        assert torch.all(row[1:] > row[:-1])  # sorted
    unit = {"random": 1, "tube": 8, "frame": 196}[kind]  # tokens per masking decision
    if n > unit:  # not clamped to the one-unit minimum: the ratio is met to the nearest unit
        assert abs((1 - n / 1568) - ratio) <= unit / 1568 / 2 + 1e-9
    else:
        assert n == unit


def test_tube_mask_same_spatial_positions_in_every_slice():
    ids = make_mask("tube", 3, (4, 5, 5), 0.8)
    spatial = (ids % 25).view(3, 4, -1)
    assert torch.all(spatial == spatial[:, :1])


def test_frame_mask_hides_whole_slices():
    ids = make_mask("frame", 3, (8, 4, 4), 0.75)
    slices = (ids // 16).view(3, 2, 16)
    assert torch.all(slices == slices[..., :1])


def test_random_mask_keeps_every_slice_visible():
    for _ in range(20):
        ids = make_mask("random", 16, (8, 14, 14), 0.95)
        per_slice = torch.zeros(16, 8, dtype=torch.long).scatter_add_(1, ids // 196, torch.ones_like(ids))
        assert torch.all(per_slice >= 1)


def test_slice_mean_matches_manual_mean_and_falls_back_to_nearest_slice():
    emb = torch.randn(1, 6, 4)
    ids = torch.tensor([[0, 1, 2, 12, 13, 14]])  # slices 0 and 3 visible (4 tokens per slice, 4 slices)
    slot = torch.tensor([[0, 1, 2, 3]])
    z = slice_mean(emb, ids, slot, tokens_per_slice=4, num_slices=4)
    first, last = emb[0, :3].mean(0), emb[0, 3:].mean(0)
    assert torch.allclose(z[0, 0], first) and torch.allclose(z[0, 3], last)
    assert torch.allclose(z[0, 1], first)  # slice 1 empty: nearest is slice 0
    assert torch.allclose(z[0, 2], last)  # slice 2 empty: nearest is slice 3


def _forward(cfg, B=3):
    model = build_model(cfg)
    T, S = cfg.model.num_frames, cfg.model.img_size
    v1, v2 = torch.randn(B, 3, T, S, S), torch.randn(B, 3, T, S, S)
    images = torch.randn(B, 1, 3, S, S)
    idx1 = torch.randint(0, T, (B, 1))
    idx2 = torch.randint(0, T, (B, 1))
    return model, model(v1, v2, images, idx1, idx2)


def test_forward_shapes(tiny_cfg):
    model, out = _forward(tiny_cfg)
    N = model.video_encoder.num_tokens
    P = 3 * tiny_cfg.model.tubelet_size * tiny_cfg.model.patch_size**2
    E = tiny_cfg.model.embed_dim
    assert out.pred.shape == out.target.shape == (6, N, P)
    assert out.z_u.shape == (6, E) and out.z_f.shape == (6, 1, E) and out.h_f.shape == (3, 1, E)
    assert out.hidden.sum(1).tolist() == [N - num_visible(model.grid, tiny_cfg.mask.video_ratio)] * 6


def test_both_views_in_one_batch_equal_two_calls(tiny_cfg):
    """docs/DESIGN.md: the two views go through the video branch as one batch of 2B clips; with the same
    masks that equals one call per view (forward_clips), in float64."""
    model = build_model(tiny_cfg).double().eval()
    m, B = tiny_cfg.model, 3
    v1, v2 = (torch.randn(B, 3, m.num_frames, m.img_size, m.img_size, dtype=torch.float64) for _ in range(2))
    f1, f2 = torch.randint(0, m.num_frames, (B, 1)), torch.randint(0, m.num_frames, (B, 1))
    ids = model.mask_video(2 * B, v1.device)
    model.mask_video = lambda batch, device: ids  # the batch call draws all 2B masks at once
    both = model.forward_video(v1, v2, f1, f2)
    calls = iter([ids[:B], ids[B:]])
    model.mask_video = lambda batch, device: next(calls)
    one, two = model.forward_clips(v1, f1), model.forward_clips(v2, f2)
    assert both.h_f is None and one.h_f is None  # Outputs of the video branch
    for k in ("pred", "target", "hidden", "z_u", "z_f"):
        value, halves = getattr(both, k), [getattr(one, k), getattr(two, k)]
        torch.testing.assert_close(value, torch.cat(halves), rtol=1e-12, atol=1e-12, msg=k)


@pytest.mark.parametrize("kind", ["random", "tube", "frame"])
def test_no_nan_with_worst_case_masks(tiny_cfg, kind):
    import dataclasses

    from crossvideomae.losses import CrossVideoMAELoss

    # the highest ratio the type allows: frame masking keeps one time slice, random keeps one token per slice
    ratio = {"random": 0.99, "tube": 0.99, "frame": 0.5}[kind]
    cfg = dataclasses.replace(
        tiny_cfg,
        mask=dataclasses.replace(tiny_cfg.mask, video_type=kind, video_ratio=ratio, image_ratio=0.99),
    )
    model, out = _forward(cfg, B=4)
    terms = CrossVideoMAELoss(cfg.loss)(out)
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_separable_position_layout(tiny_cfg):
    import dataclasses

    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, pos_embed="separable"))
    model, out = _forward(cfg)
    names = dict(model.named_parameters())
    assert "video_encoder.pos_embed_spatial" in names and "video_encoder.pos_embed_temporal" in names
    assert torch.isfinite(out.pred).all()


def test_encoder_attention_goes_through_sdpa(tiny_cfg):
    enc = build_video_encoder(tiny_cfg.model)
    assert all(blk.attn.fused_attn for blk in enc.blocks)


def test_contrastive_head_changes_only_the_contrastive_path():
    cfg = load_config("tiny", ["model.depth=1", "model.decoder_depth=1"])
    head_cfg = load_config("tiny", ["model.depth=1", "model.decoder_depth=1", "model.contrastive_head=mlp"])
    torch.manual_seed(0)
    plain = build_model(cfg)
    torch.manual_seed(0)
    headed = build_model(head_cfg)
    missing, unexpected = headed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("video_head.", "image_head.")) for k in missing)
    v1, v2 = torch.randn(2, 3, 8, 64, 64), torch.randn(2, 3, 8, 64, 64)
    images, idx = torch.randn(2, 1, 3, 64, 64), torch.tensor([[3], [5]])
    outs = []
    for model in (plain, headed):
        torch.manual_seed(1)  # the same masks
        outs.append(model(v1, v2, images, idx, idx))
    a, b = outs
    for name in ("pred", "target", "hidden"):  # reconstruction path untouched
        assert torch.equal(getattr(a, name), getattr(b, name))
    for name in ("z_u", "z_f", "h_f"):  # contrastive embeddings go through the heads
        assert getattr(a, name).shape == getattr(b, name).shape
        assert not torch.allclose(getattr(a, name), getattr(b, name))
    b.pred.pow(2).mean().backward()  # the reconstruction loss does not reach the heads
    assert all(p.grad is None for p in headed.video_head.parameters())
    assert headed.video_encoder.blocks[0].attn.qkv.weight.grad is not None


def test_attentive_classifier_reads_every_token_and_trains_the_encoder(tiny_cfg):
    """eval.ft_pool=attentive: the head reads a learned query's pooling of all tokens instead of their mean,
    and the encoder gets gradients through it."""
    from crossvideomae.eval.heads import Classifier
    from crossvideomae.models.vit import build_video_encoder

    torch.manual_seed(0)
    model = Classifier(build_video_encoder(tiny_cfg.model), 12, pool="attentive")
    m = tiny_cfg.model
    x = torch.randn(3, 3, m.num_frames, m.img_size, m.img_size)
    logits = model(x)
    assert logits.shape == (3, 12)
    tokens = model.encoder.forward_features(x)
    assert torch.allclose(logits, model.head(model.pool(tokens)))
    logits.logsumexp(-1).sum().backward()
    assert model.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
