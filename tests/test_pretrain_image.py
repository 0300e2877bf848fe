"""``crossvideomae pretrain-image``: the image MAE of stage 1 trains, exports an encoder that ``init.image=`` loads
whole, computes MAE's loss, and names the key of a bad image folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_RUN, exit_message, read_metrics
from PIL import Image

from crossvideomae.cli import main
from crossvideomae.config import load_config


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An ImageFolder tree of 16 small generated images in two classes (a gradient and a square on noise)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(16):
        folder = root / f"class{i % 2}"
        folder.mkdir(exist_ok=True)
        x = (rng.random((40, 40, 3)) * 60).astype(np.uint8)
        x[:, :, i % 3] += np.linspace(0, 150, 40, dtype=np.uint8)[None, :]
        x[8 + i : 20 + i, 10:22] = 255
        Image.fromarray(x).save(folder / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain_image")
    argv = ["pretrain-image", "-c", "tiny", "-o", str(out), *TINY_RUN, f"data.train_list={images}",
            "train.epochs=2", "data.batch_size=4", "optim.warmup_epochs=0"]  # fmt: skip
    return out, main(argv)


def test_two_epochs_record_a_finite_falling_loss_and_export_the_encoder(trained):
    out, results = trained
    assert results["epochs"] == 2 and results["steps"] == 8 and results["images"] == 16
    losses = [r["total"] for r in read_metrics(out)]
    assert len(losses) == 8 and all(np.isfinite(losses))
    first, last = (h["total"] for h in (results["history"][0], results["history"][-1]))
    assert np.isfinite([first, last]).all() and last < first
    saved = json.loads((out / "results.json").read_text())
    assert saved["command"] == "pretrain-image"
    assert saved["image_encoder"] == str(out / "image_encoder.safetensors")
    assert (out / "image_encoder.json").is_file() and (out / "checkpoint-last.pth").is_file()


def test_the_export_fills_every_image_encoder_tensor_of_crossvideomae(trained):
    from crossvideomae.models import build_model
    from crossvideomae.tasks.pretrain import build_pretraining
    from crossvideomae.weights import load_pretrained

    out, _ = trained
    path = out / "image_encoder.safetensors"
    report = load_pretrained(build_model(load_config("tiny", TINY)), path, kind="image")
    assert report.complete and not report.missing and not report.unexpected
    assert len(report.loaded) == len(build_model(load_config("tiny", TINY)).image_encoder.state_dict())
    model, _ = build_pretraining(load_config("tiny", [*TINY, f"init.image={path}"]))  # raises when partial
    from safetensors.torch import load_file

    for k, v in load_file(path).items():
        assert torch.equal(model.image_encoder.state_dict()[k], v), k


def test_resume_of_a_finished_run_changes_nothing(trained, images):
    out, results = trained
    argv = ["pretrain-image", "-c", "tiny", "-o", str(out), "--resume", *TINY_RUN, f"data.train_list={images}",
            "train.epochs=2", "data.batch_size=4", "optim.warmup_epochs=0"]  # fmt: skip
    again = main(argv)
    assert again["steps"] == results["steps"] and again["history"] == results["history"]


def _reference_loss(images, ids_keep, pred, patch):
    """MAE's loss in float64 from first principles: per-patch normalised pixels (p, p, c) of the hidden
    patches, squared error averaged per patch, then over hidden patches."""
    x = images.double()
    B, C, H, W = x.shape
    g = H // patch
    total, count = 0.0, 0
    for b in range(B):
        keep = set(ids_keep[b].tolist())
        for n in range(g * g):
            if n in keep:
                continue
            i, j = divmod(n, g)
            block = x[b, :, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch]  # (C, p, p)
            target = block.permute(1, 2, 0).reshape(-1)  # (p, p, c) order
            target = (target - target.mean()) / (target.var(unbiased=True) + 1e-6).sqrt()
            total += float(((pred[b, n].double() - target) ** 2).mean())
            count += 1
    return total / count


def test_the_loss_is_maes_on_hidden_patches_recomputed_in_float64():
    from crossvideomae.models import ImageMAE
    from crossvideomae.tasks.pretrain_image import image_mae_loss

    cfg = load_config("tiny", TINY)
    model = ImageMAE(cfg.model, cfg.mask, "patch").eval()
    images = torch.randn(3, 3, 32, 32)
    ids_keep = model.mask_image(3, "cpu")
    assert ids_keep.shape == (3, round(16 * (1 - cfg.mask.image_ratio)))
    out = model(images, ids_keep)
    assert out.pred.shape == out.target.shape == (3, 16, 3 * 8 * 8)
    assert out.hidden.sum() == 3 * (16 - ids_keep.shape[1])
    ref = _reference_loss(images, ids_keep, out.pred.detach(), 8)

    torch.manual_seed(5)
    drawn = model.mask_image(3, "cpu")
    torch.manual_seed(5)  # the step draws the same mask when the generator stands where it stood
    terms = image_mae_loss(model, {"image": images})
    got = _reference_loss(images, drawn, model(images, drawn).pred.detach(), 8)
    assert terms["total"].item() == pytest.approx(got, rel=1e-5)
    from crossvideomae.losses import reconstruction_loss

    assert reconstruction_loss(out.pred, out.target, out.hidden).item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("bad", ["missing", "file", "empty"])
def test_a_bad_image_folder_is_a_one_line_error_naming_the_key(bad, tmp_path, monkeypatch):
    target = tmp_path / "nowhere"
    if bad == "file":
        target = tmp_path / "list.txt"
        target.write_text("a.mp4 0\n")
    elif bad == "empty":
        target.mkdir()
    argv = [
        "pretrain-image",
        "-c",
        "tiny",
        "-o",
        str(tmp_path / "run"),
        *TINY_RUN,
        f"data.train_list={target}",
    ]
    message = exit_message(monkeypatch, argv)
    assert message.startswith("crossvideomae pretrain-image: config key 'data.train_list'")
    assert "\n" not in message and str(target) in message


def test_the_images_of_a_sample_frames_folder_are_found_and_other_files_ignored(tmp_path):
    from crossvideomae.tasks.pretrain_image import ImageFiles

    (tmp_path / "frames").mkdir()
    (tmp_path / "parts").mkdir()
    for name in ("0000000_000003.jpg", "0000001_000007.jpg"):
        Image.fromarray(np.full((48, 40, 3), 90, np.uint8)).save(tmp_path / "frames" / name)
    (tmp_path / "parts" / "0000000.csv").write_text("x\n")
    (tmp_path / "index.csv").write_text("video,label\n")
    files = ImageFiles(load_config("tiny", [*TINY, f"data.train_list={tmp_path}"]))
    assert [p.name for p in files.files] == ["0000000_000003.jpg", "0000001_000007.jpg"]
    assert files[1]["image"].shape == (3, 32, 32)


def test_an_unreadable_image_is_replaced_counted_and_stops_the_run_past_the_limit(images, tmp_path):
    from crossvideomae.data import TooManyBadVideos

    root = tmp_path / "images"
    for src in sorted(images.rglob("*.png"))[:6]:
        (root / src.parent.name).mkdir(parents=True, exist_ok=True)
        (root / src.parent.name / src.name).write_bytes(src.read_bytes())
    (root / "class0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")  # 7 files, one unreadable
    run = ["pretrain-image", "-c", "tiny", *TINY_RUN, f"data.train_list={root}", "train.epochs=1",
           "data.batch_size=7", "optim.warmup_epochs=0"]  # fmt: skip
    res = main([*run[:3], "-o", str(tmp_path / "ok"), *run[3:], "data.max_bad_fraction=0.5"])
    assert res["steps"] == 1 and np.isfinite(res["final_terms"]["total"])
    assert [f.split(": ")[0] for f in res["skipped_files"]] == [str(root / "class0" / "broken.png")]
    with pytest.raises(TooManyBadVideos, match=r"1 of 7 images failed to decode(.|\n)*broken\.png"):
        main([*run[:3], "-o", str(tmp_path / "stop"), *run[3:], "data.max_bad_fraction=0.01"])
