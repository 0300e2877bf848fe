"""The overlapped whole-graph step of experiments/overlap_step.py (measured in docs/PERFORMANCE-LOG.md, "Run 7")
trains like the package's step: with the same weights and masks, two steps give the same losses and the same
weights — its split backward and its two AdamW instances included. On a CPU it runs without streams or CUDA
graph (those need a GPU), so this checks the step's logic, not the capture."""

from __future__ import annotations

import pytest
import torch
from overlap_step import whole_graph_step  # next to this file

from crossvideomae.config import load_config
from crossvideomae.tasks.pretrain import pretrain_step, random_batch


def _fixed_masks(model, ids_v: torch.Tensor, ids_i: torch.Tensor) -> None:
    model.mask_video = lambda batch, device: ids_v[:batch]
    model.mask_image = lambda batch, device: ids_i[:batch]


@pytest.mark.parametrize(
    ("side", "stages"),
    [((), 1), (("image", "targets", "optimizer"), 1), (("image", "targets", "optimizer"), 2)],
)
def test_overlap_step_trains_like_the_package_step(side, stages):
    cfg = load_config("tiny", ["data.batch_size=2", "train.device=cpu", "optim.clip_grad=0"])
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    ref_step = pretrain_step(cfg, cpu)
    ref_model = ref_step.raw_model
    B, F = cfg.data.batch_size, cfg.data.num_sampled_frames
    ids_v, ids_i = ref_model.mask_video(2 * B, cpu), ref_model.mask_image(B * F, cpu)
    torch.manual_seed(0)
    step, model = whole_graph_step(cfg, cpu, side, compile=False, stages=stages)
    for m in (ref_model, model):
        _fixed_masks(m, ids_v, ids_i)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref_model.parameters(), strict=True))
    batches = [random_batch(cfg, cpu) for _ in range(2)]
    for batch in batches:
        torch.testing.assert_close(step(batch), ref_step(batch)["total"].detach(), rtol=1e-6, atol=1e-6)
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    start = [p for p in whole_graph_step(cfg, cpu, side, compile=False, stages=stages)[1].parameters()]
    assert any(not torch.equal(p, s) for p, s in zip(model.parameters(), start, strict=True))  # it trained


def test_overlap_step_refuses_early_adamw_with_clipping_or_without_optimizer_work():
    cfg = load_config("tiny", ["optim.clip_grad=1.0", "train.device=cpu"])
    with pytest.raises(ValueError, match="clip_grad"):
        whole_graph_step(cfg, torch.device("cpu"), ("image", "optimizer"), compile=False)
    with pytest.raises(ValueError, match="needs 'optimizer'"):
        whole_graph_step(cfg, torch.device("cpu"), ("image",), compile=False, stages=2)
