"""List files and folder trees, pretraining / evaluation items and collates, bad videos (replaced, reported,
counted, and the run stopped past data.max_bad_fraction)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_decode import write_index_video

from crossvideomae.cli import main
from crossvideomae.config import SynthConfig, load_config
from crossvideomae.data import (
    BadVideoLog,
    ListError,
    TooManyBadVideos,
    build_eval_dataset,
    build_pretrain_dataset,
    eval_collate,
    pretrain_collate,
    read_list,
)
from crossvideomae.data.synth import write_synthetic_dataset

SMALL = ["model.num_frames=4", "model.img_size=32", "data.short_side=32", "data.frame_stride=2"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, SynthConfig(num_train=24, num_val=12, num_frames=12, size=32), workers=1)
    return out


# ------------------------------------------------------------------------------------------------ lists
def test_relative_paths_resolve_against_the_list_folder_or_data_root(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a b.mp4").write_bytes(b"x")  # a space in the name: the label is the last field
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "l.txt").write_text("# comment\n../videos/a b.mp4 3\n\n")
    assert [(r.path, r.label) for r in read_list(tmp_path / "lists" / "l.txt")] == [
        (str(tmp_path / "lists" / "../videos/a b.mp4"), 3)
    ]
    (tmp_path / "lists" / "r.txt").write_text("videos/a b.mp4 1\n")
    assert read_list(tmp_path / "lists" / "r.txt", root=str(tmp_path))[0].path == str(
        tmp_path / "videos/a b.mp4"
    )


def test_missing_file_names_list_and_line(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "l.txt").write_text("a.mp4 0\n\nb.mp4 1\n")
    with pytest.raises(ListError, match=r"l\.txt:3: video file not found: .*b\.mp4"):
        read_list(tmp_path / "l.txt")
    (tmp_path / "m.txt").write_text("a.mp4 zero\n")
    with pytest.raises(ListError, match=r"m\.txt:1: expected 'path label'"):
        read_list(tmp_path / "m.txt")


def test_class_folder_tree_and_kind_sidecar(synth):
    tree = read_list(synth / "train")
    assert len(tree) == 24 and sorted({r.label for r in tree}) == list(range(12))
    listed = read_list(synth / "train.txt")
    kinds = dict(line.rsplit(maxsplit=1) for line in (synth / "train_kinds.txt").read_text().splitlines())
    assert [r.kind for r in listed] == [int(kinds[f"train/{r.path.split('/train/')[1]}"]) for r in listed]
    assert all(r.kind >= 0 for r in listed)


# ------------------------------------------------------------------------------------------------ items
def test_pretrain_items_and_batch(synth):
    cfg = load_config("tiny", [f"data.train_list={synth / 'train.txt'}", *SMALL, "data.num_sampled_frames=2"])
    ds = build_pretrain_dataset(cfg)
    assert len(ds) == 24 and ds.num_classes == 12 and ds.samples[0][1] == 0
    batch = pretrain_collate([ds[i] for i in range(3)])
    assert batch["video1"].shape == batch["video2"].shape == (3, 3, 4, 32, 32)
    assert batch["video1"].dtype == torch.float32
    assert batch["images"].shape == (3, 2, 3, 32, 32)
    assert batch["frame_index1"].shape == (3, 2) and batch["frame_index1"].dtype == torch.long
    assert batch["frame_index1"].max() < 4 and batch["frame_index2"].max() < 4
    assert batch["label"].tolist() == [0, 1, 2] and batch["index"].tolist() == [0, 1, 2]
    assert (batch["kind"] >= 0).all() and batch["skipped"] == []
    # normalised with the ImageNet statistics: roughly zero-centred, not in [0, 1]
    assert batch["video1"].min() < -0.5 and -1.5 < batch["video1"].mean() < 1.5


def test_set_epoch_makes_items_a_function_of_seed_epoch_index(synth):
    cfg = load_config("tiny", [f"data.train_list={synth / 'train.txt'}", *SMALL])
    a, b = build_pretrain_dataset(cfg), build_pretrain_dataset(cfg)
    a.set_epoch(3)
    b.set_epoch(3)
    assert torch.equal(a[5]["video2"], b[5]["video2"])
    b.set_epoch(4)
    assert not torch.equal(a[5]["video2"], b[5]["video2"])


def test_eval_items_train_test_multiview(synth):
    cfg = load_config("tiny", [*SMALL, "eval.num_clips=2", "eval.num_crops=3"])
    val = str(synth / "val.txt")
    test = build_eval_dataset(cfg, val, train=False)
    assert test.num_classes == 12 and len(test.samples) == 12
    x = test[0]
    assert x["video"].shape == (3, 4, 32, 32) and int(x["label"]) == 0 and int(x["kind"]) >= 0
    assert torch.equal(test[0]["video"], x["video"])  # the test clip is deterministic
    multi = build_eval_dataset(cfg, val, train=False, multiview=True)
    batch = eval_collate([multi[0], multi[1]])
    assert batch["video"].shape == (2, 6, 3, 4, 32, 32)
    assert not torch.equal(batch["video"][0, 0], batch["video"][0, 3])  # 2 clips at different times
    train = build_eval_dataset(cfg, val, train=True)
    assert train[1]["video"].shape == (3, 4, 32, 32)


def test_image_source_feeds_unrelated_images(synth, tmp_path):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((40, 50, 3), 255, np.uint8)).save(tmp_path / "imgs" / "sub" / f"{k}.jpg")
    cfg = load_config(
        "tiny",
        [
            f"data.train_list={synth / 'train.txt'}",
            *SMALL,
            f"data.image_source={tmp_path / 'imgs'}",
            "data.flip=false",
        ],
    )
    item = build_pretrain_dataset(cfg)[0]
    white = (1.0 - torch.tensor(cfg.data.mean)) / torch.tensor(cfg.data.std)
    assert item["images"].shape == (1, 3, 32, 32)
    assert torch.allclose(item["images"][0].mean(dim=(1, 2)), white, atol=0.05)


# ------------------------------------------------------------------------------------------------ bad videos
def _good_and_bad(tmp_path):
    good = write_index_video(tmp_path / "good.mp4", 20, preset="ultrafast")
    data = good.read_bytes()
    (tmp_path / "bad.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "list.txt").write_text("good.mp4 0\nbad.mp4 1\n")
    return tmp_path / "list.txt"


def test_bad_video_is_replaced_and_reported(tmp_path):
    cfg = load_config("tiny", [f"data.train_list={_good_and_bad(tmp_path)}", *SMALL])
    ds = build_pretrain_dataset(cfg)
    item = ds[1]
    assert int(item["index"]) == 0 and int(item["label"]) == 0  # the good video took its place
    assert len(item["skipped"]) >= 1 and item["skipped"][0][0] == str(tmp_path / "bad.mp4")  # (path, reason)
    batch = pretrain_collate([ds[0], item])
    assert batch["skipped"] == item["skipped"]

    log = BadVideoLog(max_fraction=0.6)
    log.update(batch["skipped"])
    log.update(batch["skipped"])  # the same file again counts once
    log.check(2)
    assert log.files == ["{}: {}".format(*item["skipped"][0])]
    strict = BadVideoLog(max_fraction=0.01)
    strict.update(batch["skipped"])
    with pytest.raises(TooManyBadVideos, match="bad.mp4"):
        strict.check(2)


def test_pretrain_reports_the_bad_file_and_stops_past_the_limit(tmp_path):
    lst = _good_and_bad(tmp_path)
    model = [
        "model.depth=1",
        "model.embed_dim=48",
        "model.decoder_depth=1",
        "model.decoder_heads=3",
        "model.patch_size=8",
    ]
    run = [
        "pretrain", "--config", "tiny", *model, *SMALL, f"data.train_list={lst}", "data.batch_size=2",
        "data.num_workers=0", "train.epochs=2", "aug.randaugment=''",
    ]  # fmt: skip
    res = main([*run[:3], "-o", str(tmp_path / "ok"), *run[3:], "data.max_bad_fraction=0.6"])
    assert res["steps"] >= 1
    saved = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert any(f.startswith(str(tmp_path / "bad.mp4")) for f in saved["skipped_files"])
    with pytest.raises(TooManyBadVideos, match="bad.mp4"):
        main([*run[:3], "-o", str(tmp_path / "stop"), *run[3:], "data.max_bad_fraction=0.01"])


# ------------------------------------------------------------------------------------------------ data.cache
@pytest.fixture
def fresh_cache():
    from crossvideomae.data import cache

    cache.clear()
    yield cache
    cache.clear()


@pytest.mark.parametrize("augment", ["cpu", "device"])
def test_memory_cache_gives_the_uncached_items(synth, fresh_cache, augment):
    over = [f"data.train_list={synth / 'train.txt'}", *SMALL, f"data.augment={augment}"]
    plain = build_pretrain_dataset(load_config("tiny", over))
    cached = build_pretrain_dataset(load_config("tiny", [*over, "data.cache=memory"]))
    assert len(fresh_cache._frames) == 24  # filled when the dataset was built
    for ds in (plain, cached):
        ds.set_epoch(2)
    for i in (0, 7, 23):
        a, b = plain[i], cached[i]
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
    val = str(synth / "val.txt")
    cfg = load_config("tiny", [*SMALL, "data.cache=memory"])
    test = build_eval_dataset(cfg, val, train=False)
    assert torch.equal(
        test[3]["video"], build_eval_dataset(load_config("tiny", SMALL), val, False)[3]["video"]
    )


def test_memory_cache_replaces_a_bad_video_like_the_reader(tmp_path, fresh_cache):
    cfg = load_config("tiny", [f"data.train_list={_good_and_bad(tmp_path)}", *SMALL, "data.cache=memory"])
    item = build_pretrain_dataset(cfg)[1]
    assert int(item["index"]) == 0 and item["skipped"][0][0] == str(tmp_path / "bad.mp4")
    assert item["skipped"][0][1].startswith("cannot open")  # the reader's own reason
