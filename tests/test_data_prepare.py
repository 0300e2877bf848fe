"""`crossvideomae prepare` on tiny trees laid out exactly like the official distributions, and the round trip
synth -> prepare folder -> dataset -> pretrain on generated files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossvideomae.cli import main
from crossvideomae.config import SynthConfig, load_config
from crossvideomae.data import ListError, build_pretrain_dataset, read_list
from crossvideomae.data.prepare import prepare
from crossvideomae.data.synth import write_synthetic_dataset


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


def lines(path: Path) -> list[tuple[str, int]]:
    return [
        (p.rsplit("/", 1)[-1], int(lab))
        for p, lab in (line.rsplit(maxsplit=1) for line in path.read_text().splitlines())
    ]


def test_kinetics_csv_layout(tmp_path):
    root = tmp_path / "k400"
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text(
        header + "abseiling,--07WQ2iBlw,1,11,train,0\n"
        '"passing American football (in game)",-0NUv6Xf2lY,35,45,train,0\n'
        "abseiling,gone_video1,0,10,train,0\n"  # deleted from YouTube: not on disk
    )
    (root / "annotations" / "validate.csv").write_text(
        header + '"passing American football (in game)",0ABC_xyz-12,120,130,val,0\n'
    )
    touch(root / "train" / "abseiling" / "--07WQ2iBlw_000001_000011.mp4")
    touch(root / "train" / "passing American football (in game)" / "-0NUv6Xf2lY_000035_000045.mp4")
    touch(root / "val" / "0ABC_xyz-12_000120_000130.mp4")  # the flat layout of other downloads
    res = prepare("kinetics", root, tmp_path / "out")
    out = tmp_path / "out"
    assert json.loads((out / "label_map.json").read_text())["classes"] == [
        "abseiling",
        "passing American football (in game)",
    ]
    assert lines(out / "train.txt") == [
        ("--07WQ2iBlw_000001_000011.mp4", 0),
        ("-0NUv6Xf2lY_000035_000045.mp4", 1),
    ]
    assert lines(out / "val.txt") == [("0ABC_xyz-12_000120_000130.mp4", 1)]
    assert res["missing"] == 1 and "gone_video1" in (out / "missing.txt").read_text()
    assert len(read_list(out / "train.txt")) == 2  # paths relative to the list resolve to the files


def test_ssv2_json_layout(tmp_path):
    root = tmp_path / "ssv2"
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "labels.json").write_text(
        json.dumps(
            {"Approaching something with your camera": "0", "Holding something next to something": "1"}
        )
    )
    train = [
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle", "template": "Holding [something] next to [something]",
         "placeholders": ["potato", "vicks vaporub bottle"]},
        {"id": "42326", "label": "approaching a cup with your camera", "template": "Approaching [something] with your camera",
         "placeholders": ["a cup"]},
    ]  # fmt: skip
    val = [{"id": "24", "label": "approaching x with your camera", "template": "Approaching [something] with your camera",
            "placeholders": ["x"]}]  # fmt: skip
    (root / "labels" / "train.json").write_text(json.dumps(train))
    (root / "labels" / "validation.json").write_text(json.dumps(val))
    for vid in ("78687", "42326", "24"):
        touch(root / "20bn-something-something-v2" / f"{vid}.webm")
    prepare("ssv2", root, tmp_path / "out")
    assert lines(tmp_path / "out" / "train.txt") == [("78687.webm", 1), ("42326.webm", 0)]
    assert lines(tmp_path / "out" / "val.txt") == [("24.webm", 0)]
    classes = json.loads((tmp_path / "out" / "label_map.json").read_text())["classes"]
    assert classes == ["Approaching something with your camera", "Holding something next to something"]


def test_ucf101_split_files(tmp_path):
    root = tmp_path / "ucf"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    # the official files have Windows line ends; classInd and the archive differ in case for HandstandPushups
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    for k in (1, 2, 3):
        g_train, g_test = ("08", "01") if k == 1 else ("01", "08")
        (lists / f"trainlist0{k}.txt").write_bytes(
            f"ApplyEyeMakeup/v_ApplyEyeMakeup_g{g_train}_c01.avi 1\r\nHandstandPushups/v_HandStandPushups_g{g_train}_c01.avi 2\r\n".encode()
        )
        (lists / f"testlist0{k}.txt").write_bytes(
            f"HandstandPushups/v_HandStandPushups_g{g_test}_c01.avi\r\n".encode()
        )
    for g in ("01", "08"):
        touch(root / "UCF-101" / "ApplyEyeMakeup" / f"v_ApplyEyeMakeup_g{g}_c01.avi")
        touch(root / "UCF-101" / "HandstandPushups" / f"v_HandstandPushups_g{g}_c01.avi")
    res = prepare("ucf101", root, tmp_path / "out", split=2)
    out = tmp_path / "out"
    assert lines(out / "train_split1.txt") == [
        ("v_ApplyEyeMakeup_g08_c01.avi", 0),
        ("v_HandstandPushups_g08_c01.avi", 1),
    ]
    assert lines(out / "val_split1.txt") == [("v_HandstandPushups_g01_c01.avi", 1)]
    assert lines(out / "train.txt") == lines(out / "train_split2.txt")  # train.txt is the chosen split
    assert lines(out / "val.txt") == [("v_HandstandPushups_g08_c01.avi", 1)]
    assert res["missing"] == 0 and res["classes"] == 2


def test_hmdb51_split_flags(tmp_path):
    root = tmp_path / "hmdb"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in ("brush_hair", "cartwheel"):
        for k in (1, 2, 3):
            (splits / f"{cls}_test_split{k}.txt").write_text(
                f"April_09_{cls}_u_nm_np1_ba_goo_0.avi 1 \n"
                f"Blonde_{cls}_f_cm_np2_le_goo_1.avi {2 if k == 1 else 1} \n"
                f"Other_{cls}_u_nm_np1_fr_med_2.avi 0 \n"
            )
        for name in (
            f"April_09_{cls}_u_nm_np1_ba_goo_0.avi",
            f"Blonde_{cls}_f_cm_np2_le_goo_1.avi",
            f"Other_{cls}_u_nm_np1_fr_med_2.avi",
        ):
            touch(root / "hmdb51_org" / cls / name)
    prepare("hmdb51", root, tmp_path / "out")
    out = tmp_path / "out"
    assert lines(out / "train.txt") == [
        ("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0),
        ("April_09_cartwheel_u_nm_np1_ba_goo_0.avi", 1),
    ]
    assert lines(out / "val.txt") == [
        ("Blonde_brush_hair_f_cm_np2_le_goo_1.avi", 0),
        ("Blonde_cartwheel_f_cm_np2_le_goo_1.avi", 1),
    ]
    assert (
        len(lines(out / "train_split2.txt")) == 4 and not (out / "val_split2.txt").exists()
    )  # flag 0 unused


def test_folder_trees_and_errors(tmp_path):
    for cls in ("b", "a"):
        for k in range(10):
            touch(tmp_path / "single" / cls / f"{k}.mp4")
    res = prepare("folder", tmp_path / "single", tmp_path / "out", val_fraction=0.3)
    assert res["num_train"] + res["num_val"] == 20 and 0 < res["num_val"] < 20
    assert json.loads((tmp_path / "out" / "label_map.json").read_text())["classes"] == ["a", "b"]
    again = prepare("folder", tmp_path / "single", tmp_path / "out2", val_fraction=0.3)
    assert (tmp_path / "out" / "val.txt").read_text() == (
        tmp_path / "out2" / "val.txt"
    ).read_text()  # stable split
    with pytest.raises(ListError, match="classInd"):
        prepare("ucf101", tmp_path / "single", tmp_path / "out3")
    with pytest.raises(ListError, match="not found"):
        prepare("folder", tmp_path / "nowhere", tmp_path / "out4")
    assert again["classes"] == 2


def test_synth_prepare_folder_dataset_and_pretrain_round_trip(tmp_path):
    data = tmp_path / "synth"
    write_synthetic_dataset(data, SynthConfig(num_train=16, num_val=8, num_frames=12, size=32), workers=1)
    res = main(["prepare", "folder", str(data), "-o", str(tmp_path / "lists")])
    assert res["num_train"] == 16 and res["num_val"] == 8 and res["classes"] == 12
    small = ["model.num_frames=4", "model.img_size=32", "data.short_side=32", "data.frame_stride=2"]
    lists = [
        f"data.train_list={tmp_path / 'lists' / 'train.txt'}",
        f"data.val_list={tmp_path / 'lists' / 'val.txt'}",
    ]
    ds = build_pretrain_dataset(load_config("tiny", [*lists, *small]))
    item = ds[0]
    assert item["video1"].shape == (3, 4, 32, 32) and ds.num_classes == 12
    model = [
        "model.depth=1",
        "model.embed_dim=48",
        "model.decoder_depth=1",
        "model.decoder_heads=3",
        "model.patch_size=8",
    ]
    out = main(["pretrain", "--config", "tiny", "-o", str(tmp_path / "run"), *model, *small, *lists,
                "data.batch_size=4", "data.num_workers=0", "train.epochs=1"])  # fmt: skip
    assert out["steps"] == 4 and out["skipped_files"] == []
    assert (tmp_path / "run" / "video_encoder.safetensors").is_file()
