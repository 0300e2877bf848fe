"""One training step: ``pretrain`` (through ``fit``) and ``bench`` (through ``pretrain_step``) take the same
``TrainStep``; on the same batch, with the same seeds, they give the same loss, gradient norm and weights."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, read_metrics

from crossvideomae.cli import main
from crossvideomae.config import ConfigError, load_config
from crossvideomae.engine import step as step_module
from crossvideomae.engine.checkpoint import load_checkpoint
from crossvideomae.tasks.pretrain import SyntheticBatches, pretrain_step

ONE_STEP = [
    *TINY,
    "data.source=synthetic",
    "data.batch_size=4",
    "data.num_workers=0",
    "train.epochs=1",
    "train.steps_per_epoch=1",
    "train.log_every=1",
    "optim.warmup_epochs=0",
    "optim.clip_grad=1.0",
    "train.seed=3",
]


def test_pretrain_and_bench_take_the_same_step(tmp_path, monkeypatch):
    built = []
    init = step_module.TrainStep.__init__
    monkeypatch.setattr(
        step_module.TrainStep, "__init__", lambda self, *a, **k: (built.append(self), init(self, *a, **k))[1]
    )
    main(["pretrain", "-o", str(tmp_path), *ONE_STEP])
    assert len(built) == 1  # fit trained through a TrainStep
    logged = read_metrics(tmp_path)[0]
    ckpt = load_checkpoint(tmp_path / "checkpoint-last.pth")

    cfg = load_config(None, ONE_STEP)
    torch.manual_seed(cfg.train.seed)  # the initial weights, as run_pretraining draws them
    step = pretrain_step(cfg, torch.device("cpu"))  # bench's step
    assert type(step) is type(built[0]) and step.accum_steps == built[0].accum_steps
    batch = SyntheticBatches(cfg)({"index": torch.arange(4)})  # the first batch data.source=synthetic feeds
    torch.manual_seed(cfg.train.seed)  # fit's masks: train.seed + rank
    terms = step.backward(batch)
    ok, grad_norm = step.update(terms["total"])
    assert ok
    assert float(terms["total"].detach()) == pytest.approx(logged["total"], rel=1e-6)
    assert float(grad_norm) == pytest.approx(logged["grad_norm"], rel=1e-6)
    assert step.optimizer.param_groups[0]["lr"] == logged["lr"]  # the same lr: fit's peak without warm-up
    for name, value in step.raw_model.state_dict().items():
        assert torch.equal(value, ckpt["model"][name]), name


def test_cuda_graphs_need_the_compiled_step_on_cuda():
    with pytest.raises(ConfigError, match="train.cuda_graphs"):
        load_config(None, [*TINY, "train.cuda_graphs=true"])  # no train.compile
    cfg = load_config(None, [*TINY, "train.compile=true", "train.cuda_graphs=true"])
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        step_module.check_cuda_graphs(cfg, torch.device("cpu"))
    assert step_module.compile_mode(cfg, processes=2) == "model"  # DDP / FSDP: the model alone


def test_synthetic_source_needs_the_cpu_batch_layout():
    with pytest.raises(ConfigError, match="data.source"):
        load_config(None, [*TINY, "data.source=synthetic", "data.augment=device"])


def test_fit_seeds_numpy_so_cutmix_boxes_repeat(tmp_path):
    """The cutmix box of aug.cutmix comes from NumPy's global stream: fit seeds it with train.seed, so whatever
    ran before, two runs of one config take the same steps."""
    import numpy as np

    runs = []
    for k in (1, 2):
        np.random.seed(k)  # what ran before
        out = tmp_path / f"run{k}"
        main(["pretrain", "-o", str(out), *ONE_STEP, "train.steps_per_epoch=3", "aug.cutmix=1.0"])
        runs.append([(r["total"], r["grad_norm"]) for r in read_metrics(out)])
    assert len(runs[0]) == 3 and runs[0] == runs[1]


def test_weight_decay_groups_keep_their_order_and_members():
    """engine.optim.param_groups (timm's param_groups_weight_decay underneath): decayed weights first, then
    norms, biases, position tables and tokens; both groups even without weight decay (checkpoints store them)."""
    from crossvideomae.engine.optim import param_groups
    from crossvideomae.models import build_model

    model = build_model(load_config(None, [*TINY, "model.pos_embed=separable"]))
    for wd in (0.05, 0.0):
        decay, rest = param_groups(model, wd)
        assert (decay["weight_decay"], rest["weight_decay"]) == (wd, 0.0)
        names = {id(p): n for n, p in model.named_parameters()}
        no_decay = {names[id(p)] for p in rest["params"]}
        assert all(p.ndim >= 2 for p in decay["params"])
        expected = {n for n, p in model.named_parameters() if p.ndim <= 1 or "pos_embed" in n or "token" in n}
        assert no_decay == expected and len(decay["params"]) + len(rest["params"]) == len(names)
