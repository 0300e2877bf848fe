"""Shared fixtures: tiny configs. Everything runs on the CPU in fp32."""

from __future__ import annotations

import pytest
import torch

from crossvideomae.config import Config, load_config

# A model small enough that a forward + backward takes milliseconds.
TINY = [
    "model.size=tiny",
    "model.depth=2",
    "model.img_size=32",
    "model.num_frames=4",
    "model.patch_size=8",
    "model.embed_dim=48",
    "model.decoder_depth=1",
    "model.decoder_heads=3",
    "data.short_side=32",
    "train.device=cpu",
    "train.precision=fp32",
]


# The same model for whole runs through the CLI (`--config tiny` plus these overrides) on 32x32 videos.
TINY_RUN = [*TINY, "data.batch_size=8", "data.num_workers=0", "train.log_every=1"]


@pytest.fixture
def tiny_cfg() -> Config:
    return load_config(None, TINY)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_synth(tmp_path_factory, num_train: int, num_val: int, num_frames: int = 12, size: int = 32):
    """A small built-in synthetic dataset written through the CLI; returns its folder."""
    from crossvideomae.cli import main

    out = tmp_path_factory.mktemp("synth")
    main(["synth", "-o", str(out), "--workers", "1", f"synth.num_train={num_train}", f"synth.num_val={num_val}",
          f"synth.num_frames={num_frames}", f"synth.size={size}"])  # fmt: skip
    return out


def read_metrics(run) -> list[dict]:
    """The lines of a run's metrics.jsonl."""
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def exit_message(monkeypatch, argv: list[str]) -> str:
    """Run the console script ``crossvideomae ARGV``; its SystemExit message (a str: Python prints it, status 1)."""
    import sys

    from crossvideomae.cli import entry

    monkeypatch.setattr(sys, "argv", ["crossvideomae", *argv])
    with pytest.raises(SystemExit) as info:
        entry()
    assert isinstance(info.value.code, str), info.value.code
    return info.value.code


def mount_tmpfs(folder, options: str, request):
    """A tmpfs at ``folder`` (``mount -o OPTIONS``), unmounted after the test. Mounting needs root in a
    container that allows it; elsewhere the test is skipped."""
    import shutil
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True) if shutil.which("mount") else None
    if proc is None or proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() if proc else 'no mount command'}")
    request.addfinalizer(lambda: subprocess.run(["umount", str(folder)], check=False))
    return folder


def float64_batch(cfg: Config) -> dict[str, torch.Tensor]:
    """``pretrain.random_batch`` of ``cfg`` on the CPU, pixels in float64."""
    from crossvideomae.tasks.pretrain import random_batch

    batch = random_batch(cfg, torch.device("cpu"))
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


def loss_and_grads(model, criterion, batch: dict, compile_options: dict | None = None, seed: int = 0):
    """The pretraining loss of one forward of ``batch`` through the training step (``TrainStep.backward``; with
    ``compile_options`` the loss and the model compiled as one graph with them; masks and drop-path draws from
    ``seed``) and every parameter's gradient."""
    from crossvideomae.engine.step import TrainStep
    from crossvideomae.tasks.pretrain import pretrain_loss

    step = TrainStep(
        model,
        pretrain_loss(criterion),
        torch.optim.SGD(model.parameters(), lr=0.0),
        torch.device("cpu"),
        compile="none" if compile_options is None else "step",
        compile_options=compile_options,
    )
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    total = step.backward(batch)["total"]
    return total.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_loss_and_grads(got, ref) -> None:
    """``loss_and_grads`` results equal to float64 round-off."""
    (loss, grads), (ref_loss, ref_grads) = got, ref
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-10, atol=1e-12, msg=name)
