"""Checkpoint files: safe loading (malicious pickles refused), atomic writes, resume picks the newest complete file,
our own checkpoints and exports round-trip through load_pretrained / model_config_from_checkpoint, and the
``convert`` command."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import pickle

import pytest
import torch

from crossvideomae.cli import main
from crossvideomae.config import to_dict
from crossvideomae.engine.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from crossvideomae.files import atomic_link, atomic_write
from crossvideomae.models import ImageEncoder, VideoEncoder, build_model
from crossvideomae.weights import load_pretrained, model_config_from_checkpoint, save_weights


class Payload:
    """Unpickling this creates ``path``: the stand-in for arbitrary code in a hostile checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, tiny_cfg, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    obj = {"model": {"w": torch.zeros(2)}, "x": Payload(marker)}
    if writer == "torch":
        torch.save(obj, evil)
    else:
        evil.write_bytes(pickle.dumps(obj))
    with pytest.raises(CheckpointError, match="evil.pth.*refused") as err:
        load_checkpoint(evil)
    assert not marker.exists()
    if writer == "torch":
        assert "open" in str(err.value)  # the offending global is named
    # the same file through every entry point, including a Hugging Face folder's pytorch_model.bin
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(evil.read_bytes())
    enc = VideoEncoder(tiny_cfg.model)
    for path in (evil, tmp_path / "hf"):
        with pytest.raises(CheckpointError, match="refused"):
            load_pretrained(enc, path, verbose=False)
        with pytest.raises(CheckpointError, match="refused"):
            model_config_from_checkpoint(path)
    assert not marker.exists()
    # the payload is real: an unrestricted unpickler does run it
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))
    assert (tmp_path / "control").exists()


def test_argparse_options_beside_weights_are_accepted(tmp_path):
    """MAE / VideoMAE save their argparse options in the checkpoint; those are plain data."""
    torch.save(
        {"model": {"w": torch.ones(3)}, "args": argparse.Namespace(lr=1e-3, model="vit"), "epoch": 5},
        tmp_path / "a.pth",
    )
    ckpt = load_checkpoint(tmp_path / "a.pth")
    assert ckpt["args"].lr == 1e-3 and torch.equal(ckpt["model"]["w"], torch.ones(3))


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left behind


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-hard-links"])
def test_atomic_link_gives_a_file_a_second_name_and_replaces_the_old_one(tmp_path, monkeypatch, links):
    new, last = tmp_path / "checkpoint-2.pth", tmp_path / "checkpoint-last.pth"
    save_checkpoint(tmp_path / "checkpoint-1.pth", {"step": 1})
    atomic_link(tmp_path / "checkpoint-1.pth", last)
    save_checkpoint(new, {"step": 2})
    if not links:  # a file system without hard links (some network mounts): an atomic copy instead

        def no_links(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_links)
    atomic_link(new, last)
    assert load_checkpoint(last)["step"] == 2 and last.samefile(new) == links
    (tmp_path / "checkpoint-1.pth").unlink()  # keep_checkpoints deletes old epochs; the newest stays
    new.unlink()
    assert load_checkpoint(last)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-last.pth"]  # no temporary file left behind


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    for epoch, step in ((1, 10), (2, 20), (3, 30)):
        save_checkpoint(tmp_path / f"checkpoint-{epoch}.pth", {"step": step, "w": torch.randn(1000)})
    assert latest_checkpoint(tmp_path).name == "checkpoint-3.pth"
    data = (tmp_path / "checkpoint-3.pth").read_bytes()
    (tmp_path / "checkpoint-3.pth").write_bytes(data[: len(data) // 2])  # a crash mid-copy
    assert latest_checkpoint(tmp_path).name == "checkpoint-2.pth"
    save_checkpoint(tmp_path / "checkpoint-last.pth", {"step": 25})
    assert latest_checkpoint(tmp_path).name == "checkpoint-last.pth"
    (tmp_path / "checkpoint-last.pth").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "checkpoint-2.pth"
    assert latest_checkpoint(tmp_path / "empty") is None


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("pos_embed", ["sincos", "separable"])
def test_our_training_checkpoint_loads_every_part(tmp_path, tiny_cfg, pos_embed):
    cfg = dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, pos_embed=pos_embed))
    model = build_model(cfg)
    save_checkpoint(
        tmp_path / "checkpoint-3.pth", {"model": model.state_dict(), "config": to_dict(cfg), "step": 7}
    )
    assert model_config_from_checkpoint(tmp_path / "checkpoint-3.pth") == cfg.model
    assert model_config_from_checkpoint(tmp_path) == cfg.model  # a run folder: its newest checkpoint

    video, image, whole = VideoEncoder(cfg.model), ImageEncoder(cfg.model), build_model(cfg)
    r = load_pretrained(video, tmp_path / "checkpoint-3.pth", verbose=False)
    assert r.complete and not r.unexpected and _same(video, model.video_encoder)
    assert r.kind == "video" and any(k.startswith("image_encoder.") for k in r.skipped)
    assert load_pretrained(image, tmp_path, verbose=False).complete and _same(image, model.image_encoder)
    r = load_pretrained(whole, tmp_path / "checkpoint-3.pth", verbose=False)
    assert r.complete and not r.skipped and _same(whole, model)
    json.dumps(dataclasses.asdict(r))  # evaluation commands store the report in results.json
    assert "loaded model weights" in str(r) and f"{len(r.loaded)}/{len(r.loaded)} tensors" in str(r)


def test_export_round_trip(tmp_path, tiny_cfg):
    model = build_model(tiny_cfg)
    for module, name in ((model.video_encoder, "video"), (model.image_encoder, "image"), (model, "model")):
        path = save_weights(module, tmp_path / f"{name}.safetensors", tiny_cfg.model)
        assert path.with_suffix(".json").is_file()
        assert model_config_from_checkpoint(path) == tiny_cfg.model
        fresh = {"video": VideoEncoder, "image": ImageEncoder}.get(name, lambda m: build_model(tiny_cfg))(
            tiny_cfg.model
        )
        report = load_pretrained(fresh, path, verbose=False)
        assert report.complete and not report.unexpected and _same(fresh, module)
    # the video encoder export also initialises the video branch of a whole model
    other = build_model(tiny_cfg)
    report = load_pretrained(other, tmp_path / "video.safetensors", "video", verbose=False)
    assert report.complete and _same(other.video_encoder, model.video_encoder)


def test_position_tables_follow_the_target_size(tmp_path, tiny_cfg):
    """Fixed tables are regenerated, learned separable ones interpolated, when the clip size changes."""
    small = dataclasses.replace(tiny_cfg.model, pos_embed="separable")
    model = VideoEncoder(small)
    save_weights(model, tmp_path / "v.safetensors", small)
    bigger = dataclasses.replace(small, img_size=64, num_frames=8)
    enc = VideoEncoder(bigger)
    report = load_pretrained(enc, tmp_path / "v.safetensors", verbose=False)
    assert report.complete
    assert enc.pos_embed_spatial.shape == (1, 64, enc.width) and enc.pos_embed_temporal.shape == (
        1,
        4,
        enc.width,
    )
    assert sum("interpolated" in n for n in report.notes) == 2


def test_convert_command(tmp_path, tiny_cfg):
    model = build_model(tiny_cfg)
    run = tmp_path / "run"
    save_checkpoint(
        run / "checkpoint-1.pth", {"model": model.state_dict(), "config": to_dict(tiny_cfg), "step": 1}
    )

    out = main(["convert", str(run), "--kind", "video", "-o", str(tmp_path / "c1")])
    assert out["loaded"] == len(model.video_encoder.state_dict()) and not out["missing"]
    enc = VideoEncoder(model_config_from_checkpoint(out["dest"]))
    load_pretrained(enc, out["dest"], verbose=False)
    assert _same(enc, model.video_encoder)

    out = main(
        [
            "convert",
            str(run / "checkpoint-1.pth"),
            "--to",
            "hf",
            "--kind",
            "model",
            "-o",
            str(tmp_path / "c2"),
        ]
    )
    from transformers import VideoMAEForPreTraining

    hf = VideoMAEForPreTraining.from_pretrained(out["dest"]).eval()
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model.video_encoder.forward_features(video)
        assert (hf.videomae(video.transpose(1, 2)).last_hidden_state - ref).abs().max() <= 1e-4
    assert (tmp_path / "c2" / "results.json").is_file()
