"""Speed options keep the numbers: visible-token embedding, activation checkpointing, torch.compile tracing,
the benchmark's FLOP count. CPU only; speed itself is measured by ``crossvideomae bench`` (docs/PERFORMANCE.md)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from conftest import TINY, loss_and_grads
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from crossvideomae import perf
from crossvideomae.cli import main
from crossvideomae.config import load_config
from crossvideomae.layers import embed_visible
from crossvideomae.losses import CrossVideoMAELoss
from crossvideomae.models import build_image_encoder, build_model, build_video_encoder, make_mask
from crossvideomae.tasks.pretrain import random_batch


def _gather(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, ids[..., None].expand(-1, -1, x.shape[-1]))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_embed_visible_equals_projection_at_those_tokens(dtype, tol):
    video = nn.Conv3d(3, 24, kernel_size=(2, 8, 8), stride=(2, 8, 8)).to(dtype)
    image = nn.Conv2d(3, 24, kernel_size=8, stride=8).to(dtype)
    for proj, x, grid in [
        (video, torch.randn(3, 3, 6, 16, 24, dtype=dtype), (3, 2, 3)),
        (image, torch.randn(3, 3, 16, 24, dtype=dtype), (1, 2, 3)),
    ]:
        ids = make_mask("random", 3, grid, 0.5)
        full = proj(x).flatten(2).transpose(1, 2)  # (B, N, D) time-major
        got = embed_visible(proj, x, grid, ids)
        assert got.shape == (3, ids.shape[1], 24)
        assert torch.allclose(got, _gather(full, ids), rtol=0, atol=tol * full.abs().max().item())


@pytest.mark.parametrize("pos_embed", ["sincos", "separable"])
def test_encoders_embed_only_visible_tokens_like_the_full_path(tiny_cfg, pos_embed):
    """Reference: embed every token, add the position table, gather the visible ones (the textbook MAE order)."""
    tiny_cfg.model.pos_embed = pos_embed
    enc = build_video_encoder(tiny_cfg.model).double().eval()
    video = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    ids = make_mask("random", 2, enc.grid, 0.75)
    ref = enc.run_blocks(_gather(enc.patch_embed(video) + enc.position_table(), ids))
    assert torch.allclose(enc.forward_features(video, ids), ref, atol=1e-10)

    img = build_image_encoder(tiny_cfg.model).double().eval()
    image = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    ids = make_mask("random", 2, img.grid, 0.75)
    pos = img.pos_embed.double()
    x = _gather(img.patch_embed(image) + pos[:, 1:], ids)
    ref = img.run_blocks(torch.cat([(img.cls_token + pos[:, :1]).expand(2, -1, -1), x], dim=1))
    assert torch.allclose(img.forward_features(image, ids), ref, atol=1e-10)


def _tiny(*extra: str):
    return load_config(None, TINY + ["data.batch_size=3", "model.drop_path=0.2", *extra])


def test_grad_checkpointing_gives_identical_loss_and_gradients():
    cfg = _tiny()
    model = build_model(cfg).train()
    ckpt = copy.deepcopy(model)
    for enc in (ckpt.video_encoder, ckpt.image_encoder):
        enc.grad_checkpointing = True
    criterion = CrossVideoMAELoss(cfg.loss)
    batch = random_batch(cfg, torch.device("cpu"))
    loss0, grads0 = loss_and_grads(model, criterion, batch, seed=3)
    loss1, grads1 = loss_and_grads(ckpt, criterion, batch, seed=3)
    assert torch.equal(loss0, loss1)
    assert grads0.keys() == grads1.keys() and len(grads0) == len(list(model.parameters()))
    for name in grads0:
        assert torch.equal(grads0[name], grads1[name]), name


@pytest.mark.parametrize("checkpointing", [False, True])
def test_step_traces_as_one_graph_and_matches_eager(checkpointing):
    """torch.compile(fullgraph=True) proves the forward + loss has no graph break (no host round trip, static
    shapes); the aot_eager backend runs the traced graph with eager kernels, so it must give the same numbers."""
    cfg = _tiny(f"model.grad_checkpointing={str(checkpointing).lower()}")
    model = build_model(cfg).train()
    criterion = CrossVideoMAELoss(cfg.loss)
    batch = random_batch(cfg, torch.device("cpu"))
    loss0, grads0 = loss_and_grads(model, criterion, batch, seed=3)
    torch.compiler.reset()
    options = {"backend": "aot_eager", "fullgraph": True}
    compiled = loss_and_grads(model, criterion, batch, compile_options=options, seed=3)
    loss1, grads1 = compiled
    assert torch.allclose(loss0, loss1, rtol=1e-6, atol=0)
    for name in grads0:
        assert torch.allclose(grads0[name], grads1[name], rtol=1e-5, atol=1e-7), name


def test_analytic_flops_match_the_flop_counter():
    """perf.pretrain_flops against PyTorch's FlopCounterMode over a real forward + backward (attention on the
    math path, which the counter sees as matrix products)."""
    cfg = load_config(None, TINY + ["data.batch_size=4", "mask.video_ratio=0.5", "mask.image_ratio=0.5"])
    model = build_model(cfg)
    criterion = CrossVideoMAELoss(cfg.loss)
    b = random_batch(cfg, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter, sdpa_kernel([SDPBackend.MATH]):
        criterion(model(b["video1"], b["video2"], b["images"], b["frame_index1"], b["frame_index2"]))[
            "total"
        ].backward()
    counted = counter.get_total_flops()
    # the losses' own products (cosine similarities, slice means) are not model FLOPs: at most a few per mille
    assert abs(counted - perf.pretrain_flops(cfg)) / counted < 5e-3


def test_bench_command_runs_on_cpu(tmp_path):
    out = main(
        ["bench", "-o", str(tmp_path), "--steps", "2", "--warmup", "1", "--profile", "1"]
        + TINY
        + ["data.batch_size=2"]
    )
    assert out["device"] == "cpu" and out["batch"] == 2
    for key in ("crossvideomae", "videomae_hf"):
        r = out[key]
        assert r["ms_per_step"] > 0 and r["tflop_per_step"] > 0 and r["clips_per_s"] > 0
    # two views + image branch + a decoder over every token: more work per clip than one VideoMAE view
    assert out["crossvideomae"]["tflop_per_step"] > out["videomae_hf"]["tflop_per_step"]
    assert (tmp_path / "results.json").is_file() and (tmp_path / "profile.txt").is_file()


def test_bench_cuda_graphs_needs_what_it_replays(tmp_path):
    """--cuda-graphs without --compile-loss / train.compile / CUDA is refused before anything is timed."""
    with pytest.raises(ValueError, match="train.cuda_graphs.*needs a CUDA device"):
        main(["bench", "-o", str(tmp_path), "--cuda-graphs", "--compile-loss", *TINY, "train.compile=true"])
