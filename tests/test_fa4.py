"""``model.decoder_attention=fa4`` (crossvideomae.fa4): the decoder's attention through two custom ops that run
FlashAttention-4's kernels on CUDA. On a CPU the ops compute softmax attention in plain PyTorch, so these tests
check the wiring against timm's SDPA attention in float64 (layouts, scale, the hand-written backward, the fake
implementations torch.compile uses); on a GPU with flash-attn-4 installed the last test checks the kernels."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_same_loss_and_grads, float64_batch, loss_and_grads

from crossvideomae.config import ConfigError, load_config
from crossvideomae.fa4 import FA4Attention, fa4_bwd, fa4_fwd, sdpa_attention
from crossvideomae.losses import CrossVideoMAELoss
from crossvideomae.models import build_model
from crossvideomae.tasks.pretrain import random_batch


def test_fa4_decoder_computes_the_sdpa_decoder():
    """Same parameters (state dicts load both ways), same loss and every gradient, in float64."""
    ref_cfg = load_config("tiny", ["mask.video_ratio=0.75", "data.batch_size=2"])
    cfg = load_config("tiny", ["mask.video_ratio=0.75", "data.batch_size=2", "model.decoder_attention=fa4"])
    torch.manual_seed(1)
    ref = build_model(ref_cfg).double()
    model = build_model(cfg).double()
    model.load_state_dict(ref.state_dict())  # strict: the names are the same
    assert all(isinstance(b.attn, FA4Attention) for b in model.decoder.blocks)
    assert not any(isinstance(b.attn, FA4Attention) for b in model.video_encoder.blocks)
    batch, criterion = float64_batch(cfg), CrossVideoMAELoss(cfg.loss)
    assert_same_loss_and_grads(loss_and_grads(model, criterion, batch), loss_and_grads(ref, criterion, batch))


def test_fa4_ops_pass_opcheck():
    """Schemas, fake (meta) implementations and the autograd registration agree with the real ops."""
    torch.manual_seed(0)
    qkv = torch.randn(2, 5, 3, 2, 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(fa4_fwd, (qkv, 0.5))
    out, lse = fa4_fwd(qkv.detach(), 0.5)
    assert out.shape == (2, 5, 2, 4) and lse.shape == (2, 2, 5)
    torch.library.opcheck(fa4_bwd, (qkv.detach(), out, torch.randn_like(out), lse, 0.5))


def test_plain_path_is_sdpa():
    """The ops' CPU path and the module's full-precision fallback compute the same attention, in float64."""
    torch.manual_seed(0)
    qkv = torch.randn(2, 7, 3, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(fa4_fwd(qkv, 0.3)[0], sdpa_attention(qkv, 0.3), rtol=1e-12, atol=1e-12)


def test_fa4_compiles():
    """torch.compile traces through the ops (their fake implementations) and gives the eager result."""
    cfg = load_config("tiny", ["model.decoder_attention=fa4", "data.batch_size=2"])
    torch.manual_seed(1)
    model = build_model(cfg)
    batch = random_batch(cfg, torch.device("cpu"))
    criterion = CrossVideoMAELoss(cfg.loss)
    eager, _ = loss_and_grads(model, criterion, batch)
    with torch._inductor.config.patch(fallback_random=True):  # the same masks as eager
        compiled, _ = loss_and_grads(model, criterion, batch, compile_options={})
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def test_fa4_config_errors():
    with pytest.raises(ConfigError, match="model.decoder_attention"):
        load_config("tiny", ["model.decoder_attention=flash"])
    attn = build_model(load_config("tiny")).decoder.blocks[0].attn
    attn.attn_drop.p = 0.1
    with pytest.raises(ValueError, match="dropout"):
        FA4Attention.adopt(attn)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fa4_kernels_match_sdpa_on_gpu():
    pytest.importorskip("flash_attn.cute")
    torch.manual_seed(0)
    qkv = torch.randn(2, 300, 3, 6, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(2, 300, 6, 64, device="cuda", dtype=torch.bfloat16)
    out = fa4_fwd(qkv, 0.125)[0]
    out.backward(g)
    ref_qkv = qkv.detach().float().requires_grad_()
    ref = sdpa_attention(ref_qkv, 0.125)
    ref.backward(g.float())
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=2e-2)
    torch.testing.assert_close(qkv.grad.float(), ref_qkv.grad, rtol=0, atol=5e-2)
    with pytest.raises(ValueError, match="bf16"):
        fa4_fwd(qkv.detach().float(), 0.125)
