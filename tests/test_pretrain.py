"""End-to-end pretraining through the CLI on generated mp4 files."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import TINY_RUN, make_synth, read_metrics

from crossvideomae.cli import main
from crossvideomae.engine.checkpoint import load_checkpoint

MODEL = TINY_RUN


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, num_train=32, num_val=8, num_frames=12)


def _args(synth, out, *extra):
    data = [f"data.train_list={synth / 'train.txt'}", f"data.val_list={synth / 'val.txt'}"]
    return ["pretrain", "--config", "tiny", "-o", str(out), *MODEL, *data, *extra]


def test_total_loss_falls_over_50_steps(synth, tmp_path):
    res = main(_args(synth, tmp_path, "train.epochs=13", "optim.warmup_epochs=1"))
    rows = read_metrics(tmp_path)
    assert res["steps"] == 52 and len(rows) == 52
    assert (
        0 < res["s_per_step"] < res["wall_time_s"] and res["peak_memory_gib"] is None
    )  # speed; CPU: no GPU memory
    # the median step interval leaves out each epoch's end (checkpoint writes, pictures)
    assert 0 < res["step_time_median_s"] < res["s_per_step"]
    first = sum(r["total"] for r in rows[:8]) / 8
    last = sum(r["total"] for r in rows[-8:]) / 8
    assert last < 0.85 * first, (first, last)
    for term in ("intra_video", "intra_frame", "cross_video", "cross_frame", "rl", "mse", "total"):
        assert term in rows[0]
    # outputs of a finished run
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "results.json").is_file()
    assert (tmp_path / "video_encoder.safetensors").is_file() and (tmp_path / "video_encoder.json").is_file()
    assert any((tmp_path / "tb").iterdir())
    ckpt = load_checkpoint(tmp_path / "checkpoint-last.pth")
    assert ckpt["epoch"] == 13 and ckpt["step"] == 52
    assert {"model", "optimizer", "config", "rng", "epoch", "step"} <= set(ckpt)


def test_resume_reproduces_the_uninterrupted_run(synth, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    extra = ("train.epochs=4", "train.keep_checkpoints=4", "data.num_workers=1")
    main(_args(synth, full, *extra))
    resumed.mkdir()
    shutil.copy(
        full / "checkpoint-2.pth", resumed / "checkpoint-2.pth"
    )  # as if the run had died after epoch 2
    res = main(_args(synth, resumed, *extra, "--resume"))
    assert res["steps"] == 16
    later = [r for r in read_metrics(full) if r["step"] > 8]
    assert [r for r in read_metrics(resumed)] == later  # every loss term of every later step, exactly
    a, b = (
        load_checkpoint(full / "checkpoint-last.pth")["model"],
        load_checkpoint(resumed / "checkpoint-last.pth")["model"],
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adapt_takes_k_updates_per_batch(synth, tmp_path):
    base = tmp_path / "base"
    main(_args(synth, base, "train.epochs=1"))
    res = main(
        [
            "adapt",
            "--config",
            "tiny",
            "-o",
            str(tmp_path / "adapted"),
            *MODEL,
            f"data.train_list={synth / 'train.txt'}",
            f"init.model={base / 'checkpoint-last.pth'}",
            "adapt.updates_per_batch=3",
            "adapt.num_batches=2",
        ]
    )
    assert res["steps"] == 6 and res["updates_per_batch"] == 3
    before = load_checkpoint(base / "checkpoint-last.pth")["model"]
    after = load_checkpoint(tmp_path / "adapted" / "checkpoint-last.pth")["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_stage2_starts_from_both_stage1_encoders(tmp_path, capsys):
    """The paper's second stage: CrossVideoMAE initialised from a video MAE encoder and an image MAE encoder,
    each reported on the console; the image branch can stay frozen."""
    from crossvideomae.config import load_config
    from crossvideomae.models import build_model
    from crossvideomae.tasks.pretrain import build_pretraining
    from crossvideomae.weights import save_weights

    cfg = load_config("tiny", MODEL)
    torch.manual_seed(7)
    stage1 = build_model(cfg)
    video = save_weights(stage1.video_encoder, tmp_path / "video.safetensors", cfg.model)
    image = save_weights(stage1.image_encoder, tmp_path / "image.safetensors", cfg.model)
    stage2_cfg = load_config(
        "tiny", [*MODEL, f"init.video={video}", f"init.image={image}", "train.freeze_image=true"]
    )
    model, _ = build_pretraining(stage2_cfg)
    for part in ("video_encoder", "image_encoder"):
        mine, theirs = getattr(model, part).state_dict(), getattr(stage1, part).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    report = capsys.readouterr().out
    assert "video weights from" in report and "image weights from" in report
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert all(p.requires_grad for p in model.video_encoder.parameters())
