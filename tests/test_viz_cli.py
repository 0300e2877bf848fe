"""``crossvideomae visualize`` and ``crossvideomae report`` through ``cli.main`` on a tiny model and a generated video."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossvideomae.cli import main
from crossvideomae.config import SynthConfig, load_config, save_config, to_dict
from crossvideomae.data.synth import render_video, write_mp4
from crossvideomae.engine.checkpoint import CheckpointError, save_checkpoint
from crossvideomae.models import build_model
from crossvideomae.tasks.visualize import read_clip
from crossvideomae.viz.grid import CELL_INCHES, DPI, ROWS, clip_panels

SMALL = ["model.depth=2", "model.decoder_depth=1"]  # the tiny preset (64 px, 8 frames, patch 8), shallower
VIDEO_FRAMES = 24


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames, _ = render_video(0, 3, SynthConfig(num_frames=VIDEO_FRAMES, size=64))
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(path, frames, fps=16)
    return path, frames


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    cfg = load_config("tiny", SMALL)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint-last.pth"
    save_checkpoint(path, {"model": build_model(cfg).state_dict(), "config": to_dict(cfg), "step": 1})
    return path


def test_visualize_cli(tmp_path, video, checkpoint):
    out = tmp_path / "vis"
    results = main(
        [
            "visualize",
            "--checkpoint",
            str(checkpoint),
            "--video",
            str(video[0]),
            "-o",
            str(out),
            "mask.video_ratio=0.75",
        ]
    )
    # 24 frames, 8 per clip at stride 2: the window spans 15 frames, centred -> starts at 4
    assert results["frames"] == list(range(4, 19, 2))
    assert results["sampled_frame"] == 12
    assert results["video_mask_ratio"] == 0.75  # the override beats the checkpoint's 0.9
    assert (
        load_config(str(out / "config.yaml")).model.depth == 2
    )  # the checkpoint's architecture, written down
    with Image.open(out / "fig1.png") as png:
        t = 4  # time slices of 8 frames in tubelets of 2
        assert png.size == (round(CELL_INCHES * DPI * (t + 1)), round(CELL_INCHES * DPI * len(ROWS)))
    with Image.open(out / "clip.gif") as gif:
        assert gif.n_frames == 8
        assert gif.size == (2 * (4 * (64 + 2) - 2), 2 * 64)  # 4 panels, enlarged x2 (64 px clip)
    assert json.loads((out / "results.json").read_text())["grid"] == str(out / "fig1.png")


def test_visualize_cli_without_saved_config(tmp_path, video):
    cfg = load_config("tiny", SMALL)
    bare = tmp_path / "weights.pth"
    save_checkpoint(bare, build_model(cfg).state_dict())  # a plain state dict: the config comes from --config
    results = main(
        [
            "visualize",
            "--config",
            "tiny",
            "--checkpoint",
            str(bare),
            "--video",
            str(video[0]),
            "-o",
            str(tmp_path / "v"),
            "--start",
            "0",
            "--compact",
            *SMALL,
        ]
    )
    assert results["frames"] == list(range(0, 16, 2))
    with Image.open(tmp_path / "v" / "fig1.png") as png:
        assert png.mode == "P"  # --compact: a 256-colour palette file


def test_visualize_cli_refuses_weights_that_do_not_fit(tmp_path, video):
    cfg = load_config("tiny", SMALL)
    bare = tmp_path / "weights.pth"
    save_checkpoint(bare, build_model(cfg).state_dict())
    args = [
        "visualize",
        "--config",
        "tiny",
        "--checkpoint",
        str(bare),
        "--video",
        str(video[0]),
        "-o",
        str(tmp_path),
    ]
    with pytest.raises(CheckpointError, match="must load whole"):
        main(args)  # the preset's 4 blocks vs the file's 2: half the encoder would stay random
    state = {k: v for k, v in build_model(cfg).state_dict().items() if not k.startswith("image_encoder.")}
    save_checkpoint(bare, state)  # no image branch (as in a VideoMAE checkpoint): pictures, with a note
    results = main([*args, *SMALL])
    assert results["weights_missing"] and all(
        k.startswith("image_encoder.") for k in results["weights_missing"]
    )


def test_original_row_shows_the_decoded_video(video, checkpoint):
    """The first row is the decoded clip un-normalised back to RGB (H.264 at crf 18 is nearly lossless)."""
    path, frames = video
    cfg = load_config("tiny", SMALL)
    clip, ids = read_clip(str(path), cfg, start=-1)
    model = build_model(cfg).eval()
    rows, sampled = clip_panels(model, clip[None], clip[None, :, 4], (cfg.data.mean, cfg.data.std))
    expected = frames[ids].astype(np.float64) / 255
    assert np.abs(rows[0, 0] - expected).mean() < 0.03
    assert np.abs(sampled[0, 0] - expected[4]).mean() < 0.03


def test_report_cli(tmp_path):
    run = tmp_path / "run"
    (run / "pictures").mkdir(parents=True)
    save_config(load_config("tiny"), run / "config.yaml")
    (run / "results.json").write_text(
        json.dumps(
            {
                "final_loss": 1.23456,
                "eval": {"acc1": 55.5},
                "history": [{"epoch": 0, "total": 3.0}, {"epoch": 1, "total": 2.5}],
            }
        )
    )
    lines = [
        json.dumps({"step": s, "epoch": s // 4, "lr": 1e-3, "total": 4.0 - 0.1 * s, "rl": 1.0})
        for s in range(12)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for e in (1, 2, 3):
        Image.new("RGB", (8, 8), (e * 60, 0, 0)).save(run / "pictures" / f"reconstruction-epoch{e:04d}.png")
    Image.new("RGB", (8, 8)).save(run / "fig1.png")
    (run / "readout").mkdir()
    (run / "readout" / "results.json").write_text(json.dumps({"retrieval_r1": 0.5}))

    results = main(["report", str(run), "-o", str(tmp_path / "report-cmd")])
    text = (run / "report.md").read_text()
    assert results["report"] == str(run / "report.md")
    assert "| final_loss | 1.235 |" in text and "| eval.acc1 | 55.5 |" in text
    assert "| epoch | total |" in text and "| 1 | 2.5 |" in text  # per-epoch records as their own table
    assert "### Results of `readout/`" in text and "| retrieval_r1 | 0.5 |" in text  # a sub-run's results
    assert re.search(r"\| total \| 4 \| 2\.9 \(step 11\) \| 2\.9 \| 0 \|", text)
    assert (run / "pictures" / "losses.png").is_file()  # drawn because the run had none
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert all((run / link).is_file() for link in links)
    assert (
        "pictures/reconstruction-epoch0001.png" in links and "pictures/reconstruction-epoch0003.png" in links
    )
    assert "pictures/reconstruction-epoch0002.png" not in links  # of a series only the first and the last
    assert "fig1.png" in links and "pictures/losses.png" in links
    assert results["pictures"] == len(links) == 4
    assert "```yaml" in text and "size: tiny" in text
    assert load_config(str(run / "config.yaml")).model.size == "tiny"  # the run's config is left alone


def test_report_refuses_missing_folder(tmp_path):
    with pytest.raises(SystemExit, match="no run folder"):
        main(["report", str(tmp_path / "nothing"), "-o", str(tmp_path / "r")])
