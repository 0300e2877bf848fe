"""Augmentations: one set of random parameters per clip, flips shared by the two views and off when
data.flip is false, the test crops, mixup / cutmix of view 2, and the optional torchcodec backend."""

from __future__ import annotations

import pytest
import torch

from crossvideomae.config import load_config
from crossvideomae.data import merge_backgrounds, mix_video2
from crossvideomae.data.transforms import EvalTransforms, PretrainTransforms, parse_randaugment


def _cfg(*extra):
    return load_config(None, ["model.img_size=32", "model.num_frames=4", "data.short_side=32", *extra])


def _ramp_clip(T=6, H=40, W=48) -> torch.Tensor:
    """(T, 3, H, W) uint8 frames, all equal: a left-to-right ramp with a bright block at the top left."""
    x = torch.linspace(0, 200, W).round().to(torch.uint8).expand(H, W).clone()
    x[:8, :8] = 255
    return x.expand(T, 3, H, W).clone()


def test_every_frame_gets_the_same_random_parameters():
    cfg = _cfg("aug.randaugment=rand-m9-n2-mstd0.5", "aug.color_jitter=0.4", "aug.random_erasing=1.0")
    tf = PretrainTransforms(cfg.data, cfg.aug, 32)
    for seed in range(10):
        torch.manual_seed(seed)
        v2 = tf.view2(_ramp_clip(), flip=False)  # (3, T, S, S)
        assert v2.shape == (3, 6, 32, 32)
        assert all(torch.equal(v2[:, 0], v2[:, t]) for t in range(1, 6)), seed  # equal frames stay equal


def test_hue_jitter_shifts_the_colours_of_view_2_only_and_alike_on_every_frame():
    cfg = _cfg(
        "data.crop_scale=[1.0,1.0]",
        "aug.randaugment=''",
        "aug.color_jitter=0",
        "aug.hue=0.5",
        "aug.random_erasing=0",
    )
    tf = PretrainTransforms(cfg.data, cfg.aug, 32)
    red = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    red[:, 0] = 200  # a pure red clip: a hue shift moves its energy to the other channels
    torch.manual_seed(0)
    assert torch.equal(tf.view1(red, False), tf.view1(red, False))  # view 1 is never colour-jittered
    shifted = 0
    for seed in range(10):
        torch.manual_seed(seed)
        v2 = tf.view2(red, flip=False)  # (3, T, S, S), normalised
        assert all(torch.equal(v2[:, 0], v2[:, t]) for t in range(1, 4)), seed
        shifted += int(not torch.allclose(v2, tf.view1(red, False), atol=1e-3))
    assert shifted >= 8  # a uniform draw in [-0.5, 0.5] leaves red (almost) unchanged rarely
    with pytest.raises(ValueError, match="aug.hue"):
        _cfg("aug.hue=0.7")


def _mirrored(view: torch.Tensor) -> bool:
    """Is the ramp (bright on the right) mirrored? view (3, T, S, S)."""
    row = view[0, 0].mean(dim=0)
    return bool(row[:4].mean() > row[-4:].mean())


def test_flip_shared_by_views_and_off_for_direction_labels():
    cfg = _cfg(
        "data.crop_scale=[1.0,1.0]", "aug.randaugment=''", "aug.color_jitter=0", "aug.random_erasing=0"
    )
    tf = PretrainTransforms(cfg.data, cfg.aug, 32)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        flip = tf.flip()
        a, b = _mirrored(tf.view1(_ramp_clip(), flip)), _mirrored(tf.view2(_ramp_clip(), flip))
        assert a == b == flip
        seen.add(flip)
    assert seen == {True, False}
    off = _cfg("data.flip=false")
    tf = PretrainTransforms(off.data, off.aug, 32)
    assert not any(tf.flip() for _ in range(50))
    ev = EvalTransforms(off.data, 32)
    assert not any(_mirrored(ev.train(_ramp_clip())) for _ in range(20))


def test_test_crops_left_centre_right_and_normalisation():
    cfg = _cfg()
    crops = EvalTransforms(cfg.data, 32).test(_ramp_clip(H=32, W=64), num_crops=3)  # (3, 3, T, 32, 32)
    assert crops.shape == (3, 3, 6, 32, 32)
    means = [float(c[0].mean()) for c in crops]
    assert means[0] < means[1] < means[2]  # the ramp brightens to the right
    centre = EvalTransforms(cfg.data, 32).test(_ramp_clip(H=32, W=64), num_crops=1)[0]
    assert torch.equal(centre, crops[1])
    white = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    out = EvalTransforms(cfg.data, 32).test(white, 1)[0, :, 0]  # (3, 32, 32)
    expected = (1 - torch.tensor(cfg.data.mean)) / torch.tensor(cfg.data.std)
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-5)


def test_mix_video2_mixup_and_cutmix():
    v = torch.stack([torch.full((3, 4, 16, 16), float(i)) for i in range(4)])  # sample i is all i
    same, lam = mix_video2(v, 0.0, 0.0)
    assert same is v and lam == 1.0
    torch.manual_seed(0)
    mixed, lam = mix_video2(v, 0.8, 0.0)
    assert 0 <= lam <= 1
    assert torch.allclose(mixed[1], lam * v[1] + (1 - lam) * v[0])  # mixed with the previous sample
    torch.manual_seed(1)
    cut, lam = mix_video2(v, 0.0, 1.0)
    own = (cut[2] == 2).float().mean().item()
    assert abs(own - lam) < 1e-6  # lam is the share of the sample's own pixels
    assert torch.equal(cut[2, :, 0], cut[2, :, 3])  # the same box on every frame
    assert set(cut[2].unique().tolist()) <= {1.0, 2.0}


def test_merge_backgrounds_puts_the_moving_pixels_on_the_previous_clips_still_background():
    """Each clip: its own flat background (value 10 + i) with a bright 4x4 square that moves right one pixel per
    frame (clip i in rows 8i+4 to 8i+7). After the merge clip i keeps the square's path on every frame, and shows
    clip i-1's median over time (its flat background: the square covers a pixel in at most half of the frames)
    everywhere else, the same on every frame."""
    B, T, S = 3, 8, 32
    v = torch.stack([torch.full((3, T, S, S), 10.0 + i) for i in range(B)])
    for i in range(B):
        for t in range(T):
            v[i, :, t, 8 * i + 4 : 8 * i + 8, 2 + t : 6 + t] = 200.0
    assert merge_backgrounds(v, 0.0) is v
    out = merge_backgrounds(v, 0.3)
    for i in range(B):
        kept = (out[i] == v[i]).all(dim=0).all(dim=0)  # (S, S)
        assert kept[8 * i + 4 : 8 * i + 8, 2 : 6 + T - 1].all()  # the square's whole path
        assert 0 < kept.float().mean() <= 0.3
        assert (out[i][:, :, ~kept] == 10.0 + (i - 1) % B).all()  # the previous clip's background, no square


def test_pretrain_prepare_merges_each_view_onto_a_different_clips_background():
    """aug.background_merge: view 1 of clip i on clip i-1's background, view 2 on clip i+1's; the images keep
    their own; 0 leaves the batch alone."""
    from crossvideomae.tasks.pretrain import pretrain_prepare

    torch.manual_seed(0)
    batch = {
        "video1": torch.rand(4, 3, 4, 8, 8),
        "video2": torch.rand(4, 3, 4, 8, 8),
        "images": torch.rand(4, 1, 3, 8, 8),
    }
    off = pretrain_prepare(load_config(None, []), lambda b: b)(batch)
    assert off["video1"] is batch["video1"] and off["video2"] is batch["video2"]
    out = pretrain_prepare(load_config(None, ["aug.background_merge=0.25"]), lambda b: b)(batch)
    assert torch.equal(out["video1"], merge_backgrounds(batch["video1"], 0.25, 1))
    assert torch.equal(out["video2"], merge_backgrounds(batch["video2"], 0.25, -1))
    assert not torch.equal(out["video1"], batch["video1"]) and out["images"] is batch["images"]
    kept = (out["video2"] == batch["video2"]).all(dim=(1, 2)).float().mean().item()  # per clip and pixel
    assert abs(kept - 0.25) < 0.05  # the share of each clip's own pixels
    # repeated sampling: a video's r clips are neighbours in the batch, so the background comes from r clips away
    cfg = load_config(None, ["aug.background_merge=0.25", "data.repeated_sampling=2", "data.batch_size=4"])
    out = pretrain_prepare(cfg, lambda b: b)(batch)
    assert torch.equal(out["video1"], merge_backgrounds(batch["video1"], 0.25, 2))
    assert torch.equal(out["video2"], merge_backgrounds(batch["video2"], 0.25, -2))


def test_randaugment_spec():
    assert parse_randaugment("rand-m9-n2-mstd0.5") == (9, 2, 0.5)
    assert parse_randaugment("rand-m5-n1") == (5, 1, 0.0)
    with pytest.raises(ValueError, match="rand-m9"):
        parse_randaugment("autoaug")


def test_torchcodec_backend_reads_the_same_frames(tmp_path):
    pytest.importorskip("torchcodec")
    from test_data_decode import decoded_indices, write_index_video

    from crossvideomae.data.decode import open_video

    path = str(write_index_video(tmp_path / "v.mp4", 20))
    with open_video(path, backend="torchcodec") as reader:
        assert reader.info.num_frames == 20
        assert decoded_indices(reader.frames([3, 17, 8])) == [3, 17, 8]
