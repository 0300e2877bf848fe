"""Every evaluation command end to end through ``crossvideomae.cli.main`` on generated videos (tiny model)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
import torch
from conftest import make_synth
from PIL import Image
from safetensors.torch import load_file

from crossvideomae.cli import main
from crossvideomae.config import load_config
from crossvideomae.data import build_eval_dataset
from crossvideomae.eval.encoders import build_encoder
from crossvideomae.models import build_model
from crossvideomae.tasks.pretrain import export_video_encoder

TINY = [
    "model.depth=1",
    "model.img_size=32",
    "model.patch_size=8",
    "model.num_frames=4",
    "model.decoder_depth=1",
    "data.short_side=32",
    "data.num_workers=0",
    "data.batch_size=8",
    "eval.batch_size=8",
    "eval.epochs=3",
    "eval.warmup_epochs=1",
    "train.device=cpu",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory, num_train=24, num_val=12, num_frames=8)


def overrides(synth: Path, *extra: str) -> list[str]:
    return [*TINY, f"data.train_list={synth}/train.txt", f"data.val_list={synth}/val.txt", *extra]


@pytest.fixture(scope="module")
def pretrained(synth, tmp_path_factory) -> Path:
    """A video encoder exported the way ``pretrain`` exports it (weights of another seed than eval's)."""
    out = tmp_path_factory.mktemp("pretrained")
    cfg = load_config("tiny", overrides(synth))
    torch.manual_seed(123)
    return export_video_encoder(build_model(cfg), cfg, out)


def test_linprobe(synth, tmp_path):
    res = main(["linprobe", "-c", "tiny", "-o", str(tmp_path), *overrides(synth)])
    assert res["num_train"] == 24 and res["num_val"] == 12 and res["num_classes"] == 12
    assert 0.0 <= res["acc1"] <= res["acc5"] <= 100.0
    assert len(res["per_class_acc1"]) == 12 and len(res["confusion_matrix"]) == 12
    assert sum(map(sum, res["confusion_matrix"])) == 12
    assert res["encoder"]["checkpoint"] is None  # random init
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "results.json").is_file()


def test_attentive_probe_command(synth, pretrained, tmp_path):
    res = main(["linprobe", "-c", "tiny", "-o", str(tmp_path), *overrides(synth, f"eval.checkpoint={pretrained}",
                "eval.probe=attentive", "eval.attn_epochs=3", "eval.attn_batch_size=8")])  # fmt: skip
    assert res["probe"] == "attentive" and res["num_classes"] == 12
    assert 0.0 <= res["acc1"] <= res["acc5"] <= 100.0 and res["loss_last_epoch"] < res["loss_first_epoch"]


def test_linprobe_records_checkpoint_hash(synth, pretrained, tmp_path):
    res = main(["linprobe", "-c", "tiny", "-o", str(tmp_path), *overrides(synth, f"eval.checkpoint={pretrained}",
                "eval.label=kind")])  # fmt: skip
    assert res["encoder"]["sha256"] == hashlib.sha256(pretrained.read_bytes()).hexdigest()
    assert res["num_classes"] == 5 and res["label"] == "kind"


def test_retrieve(synth, tmp_path):
    res = main(["retrieve", "-c", "tiny", "-o", str(tmp_path), *overrides(synth, "eval.ks=[1,5,10,20,23]")])
    ranks = [res[f"R@{k}"] for k in (1, 5, 10, 20, 23)]
    assert ranks == sorted(ranks) and all(0 <= r <= 100 for r in ranks)
    assert res["R@23"] == 100.0  # 2 of the 24 train clips share each class: the first comes by rank 23
    assert res["num_gallery"] == 24 and res["num_queries"] == 12


def test_retrieve_split_placeholder(synth, tmp_path):
    for split in (1, 2):  # UCF101 / HMDB51 style lists: {split} in the path picks the split's files
        (synth / f"train_split{split}.txt").write_text((synth / "train.txt").read_text())
        (synth / f"val_split{split}.txt").write_text((synth / "val.txt").read_text())
    res = main(["retrieve", "-c", "tiny", "-o", str(tmp_path), *TINY, "eval.split=2",
                f"data.train_list={synth}/train_split{{split}}.txt", f"data.val_list={synth}/val_split{{split}}.txt"])  # fmt: skip
    assert res["gallery"].endswith("train_split2.txt") and res["queries"].endswith("val_split2.txt")


def test_extract_rows_match_a_direct_forward(synth, tmp_path):
    res = main(
        ["extract", "-c", "tiny", "-o", str(tmp_path), "--input", str(synth / "val.txt"), *overrides(synth)]
    )
    tensors = load_file(str(tmp_path / "features.safetensors"))
    assert tensors["features"].shape == (12, 192) and res["num_videos"] == 12
    rows = list(csv.DictReader((tmp_path / "index.csv").open()))
    assert [int(r["row"]) for r in rows] == list(range(12))
    cfg = load_config("tiny", overrides(synth))
    encoder, _ = build_encoder(cfg)
    dataset = build_eval_dataset(cfg, str(synth / "val.txt"), train=False)
    for i in (0, 7):
        assert Path(rows[i]["path"]) == Path(dataset.samples[i][0])
        with torch.no_grad():
            direct = encoder.eval()(dataset[i]["video"][None])[0]
        torch.testing.assert_close(tensors["features"][i], direct, rtol=1e-4, atol=1e-5)
        assert int(tensors["label"][i]) == dataset.samples[i][1]


def test_extract_plain_folder(synth, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for src in sorted((synth / "val").rglob("*.mp4"))[:3]:
        (folder / f"{src.parent.name}_{src.name}").write_bytes(src.read_bytes())
    res = main(
        ["extract", "-c", "tiny", "-o", str(tmp_path / "out"), "--input", str(folder), *overrides(synth)]
    )
    assert res["num_videos"] == 3


@pytest.mark.parametrize("pool", ["mean", "attentive"])
def test_finetune_then_test_agree(synth, pretrained, tmp_path, pool):
    ft = main(["finetune", "-c", "tiny", "-o", str(tmp_path / "ft"), *overrides(synth, f"eval.checkpoint={pretrained}",
               "eval.epochs=1", "train.steps_per_epoch=2", "eval.num_clips=2", "eval.num_crops=3",
               f"eval.ft_pool={pool}")])  # fmt: skip
    assert ft["steps"] == 2 and ft["test"]["views"] == 6 and ft["encoder"]["sha256"]
    assert len(ft["history"]) == 1 and ft["history"][0]["total"] > 0
    ckpt = tmp_path / "ft" / "checkpoint-last.pth"
    res = main(["test", "-c", "tiny", "-o", str(tmp_path / "test"), *overrides(synth, f"eval.checkpoint={ckpt}",
                "eval.num_clips=2", "eval.num_crops=3")])  # fmt: skip
    assert res["classifier"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert res["acc1"] == pytest.approx(ft["test"]["acc1"]) and res["acc5"] == pytest.approx(
        ft["test"]["acc5"]
    )
    assert res["confusion_matrix"] == ft["test"]["confusion_matrix"]
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    assert any(k.startswith("pool.") for k in state) == (pool == "attentive")  # `test` rebuilt the same head


def test_readout_table(synth, pretrained, tmp_path, capsys):
    res = main(
        ["readout", "-c", "tiny", "-o", str(tmp_path), *overrides(synth, f"eval.checkpoint={pretrained}")]
    )
    rows = {(r["label"], r["encoder"]): r for r in res["table"]}
    assert set(rows) == {(lab, enc) for lab in ("label", "kind") for enc in ("pretrained", "random")}
    assert rows[("label", "random")]["num_classes"] == 12 and rows[("kind", "random")]["num_classes"] == 5
    for r in rows.values():
        assert 0 <= r["R@1"] <= r["R@5"] <= 100 and 0 <= r["probe_acc1"] <= 100
        assert 0 <= r["attn_acc1"] <= r["attn_acc5"] <= 100 and 0 <= r["attn_train_acc1"] <= 100
    assert res["knn_center"] is True and res["attentive_probe"]["epochs"] >= 1
    assert res["random_init"]["checkpoint"] is None and res["encoder"]["sha256"]
    assert "object kind" in capsys.readouterr().out and (tmp_path / "readout.txt").is_file()


def test_image_encoder_linprobe_on_image_folder(tmp_path):
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("val", 3)):
        for c, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
            (tmp_path / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                noise = torch.randint(0, 40, (32, 32, 3), generator=g)
                pixels = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(tmp_path / split / f"class{c}" / f"{i}.png")
    res = main(["linprobe", "-c", "tiny", "-o", str(tmp_path / "run"), *TINY, "eval.encoder=image",
                f"data.train_list={tmp_path / 'train'}", f"data.val_list={tmp_path / 'val'}", "eval.epochs=10"])  # fmt: skip
    assert res["num_classes"] == 2 and res["num_train"] == 12 and res["num_val"] == 6
    assert res["acc1"] == 100.0  # two flat colours: any encoder separates them


def test_repeated_augmentation_draws_differ(synth):
    from crossvideomae.engine.sampling import SeededItems
    from crossvideomae.tasks.finetune import Repeated, repeated_collate

    cfg = load_config("tiny", overrides(synth))
    items = SeededItems(Repeated(build_eval_dataset(cfg, str(synth / "train.txt"), train=True), 2), seed=0)
    item = items[0, 3]  # (epoch, index)
    assert item["video"].shape[0] == 2 and not torch.equal(item["video"][0], item["video"][1])
    torch.testing.assert_close(items[0, 3]["video"], item["video"])  # reproducible per (seed, epoch, index)
    assert not torch.equal(items[1, 3]["video"], item["video"])  # another epoch, other draws
    batch = repeated_collate([items[0, 0], items[0, 1]])
    assert batch["video"].shape[0] == 4 and batch["index"].tolist() == [0, 0, 1, 1]


def test_evaluation_shows_progress_and_its_help_names_eval_checkpoint(synth, tmp_path, capsys):
    """Feature extraction over thousands of clips shows a progress bar per split; the help of every command that
    evaluates a checkpoint names ``eval.checkpoint=``; the top-level help is plain text."""
    from crossvideomae.cli import _parser

    parser = _parser()
    assert "``" not in parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("readout", "linprobe", "retrieve", "extract", "finetune", "test"):
        assert "eval.checkpoint=" in sub.choices[name].format_help(), name
    capsys.readouterr()
    main(["retrieve", "-c", "tiny", "-o", str(tmp_path), *overrides(synth)])
    err = capsys.readouterr().err
    assert "features (train)" in err and "/24 [" in err  # 24 train clips
    assert "features (val)" in err and "/12 [" in err
