"""Bad inputs: list files, video files, checkpoints, config keys and values, run folders.

Each gives a clear error naming the file / line / key, or a documented skip, and none of them touches the
outputs of an earlier run in the same folder. Training runs here are one or two steps of the tiny model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import TINY, TINY_RUN, exit_message, make_synth, mount_tmpfs

from crossvideomae.cli import main
from crossvideomae.config import Config, ConfigError, _rules, load_config
from crossvideomae.data import ListError, TooManyBadVideos
from crossvideomae.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crossvideomae.models import build_model
from crossvideomae.tasks.pretrain import build_pretraining
from crossvideomae.weights import save_weights

MODEL = TINY
RUN = [*TINY_RUN, "train.epochs=1"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, num_train=16, num_val=1, num_frames=12)


def _pretrain(out, train_list, *extra):
    return ["pretrain", "--config", "tiny", "-o", str(out), *RUN, f"data.train_list={train_list}", *extra]


def _snapshot(folder):
    """Name -> sha256 of every file in a run folder."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(synth, tmp_path_factory):
    """A finished one-step run: the earlier outputs that later failing commands must leave alone."""
    out = tmp_path_factory.mktemp("finished")
    main(_pretrain(out, synth / "train.txt", "train.steps_per_epoch=1"))
    assert {"checkpoint-1.pth", "checkpoint-last.pth", "config.yaml", "results.json"} <= set(_snapshot(out))
    return out


def test_steps_per_epoch_past_one_pass_says_how_long_the_epoch_is(synth, tmp_path, capsys):
    """An epoch is one pass over the data at most: asking for more steps says so, with the epoch's length."""
    main(_pretrain(tmp_path / "run", synth / "train.txt", "train.steps_per_epoch=120"))
    said = capsys.readouterr().out
    assert "train.steps_per_epoch=120 is more than one pass over the 16 videos: an epoch is 2 step(s)" in said
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 2


# ------------------------------------------------------------------------------------------------ list files
@pytest.mark.parametrize(
    "content, match",
    [
        ("", r"list\.txt: no videos listed"),
        ("# only a comment\n\n", r"list\.txt: no videos listed"),
        ("{good} 0\n{good} walking\n", r"list\.txt:2: expected 'path label', got '.* walking'"),
        ("{good} 0\n{good} 1.5\n", r"list\.txt:2: expected 'path label'"),
        ("{good}\n", r"list\.txt:1: expected 'path label'"),
        ("{good} 0\n\n{missing} 1\n", r"list\.txt:3: video file not found: .*missing\.mp4"),
    ],
    ids=["empty", "comments-only", "label-not-a-number", "label-float", "no-label", "missing-video"],
)
def test_bad_list_file_names_file_and_line(synth, tmp_path, monkeypatch, content, match):
    lst = tmp_path / "list.txt"
    good = synth / "train" / "move_right" / "00000.mp4"
    lst.write_text(content.format(good=good, missing=tmp_path / "missing.mp4"))
    with pytest.raises(ListError, match=match):
        main(_pretrain(tmp_path / "run", lst))
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    message = exit_message(monkeypatch, _pretrain(tmp_path / "run2", lst))
    assert message.startswith(f"crossvideomae pretrain: {lst}") and "\n" not in message


def test_missing_list_file(tmp_path):
    with pytest.raises(ListError, match=r"list file not found: .*nowhere\.txt"):
        main(_pretrain(tmp_path / "run", tmp_path / "nowhere.txt"))


# ------------------------------------------------------------------------------------------------ video files
def _list_with_bad_files(synth, folder):
    """13 good videos, a zero-byte file, a truncated mp4 and a text file named .mp4: 16 = two batches of 8."""
    good = [line for line in (synth / "train.txt").read_text().splitlines()][:13]
    data = (synth / "train" / "move_right" / "00000.mp4").read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "notes.mp4").write_text("this is not a video\n")
    lst = folder / "list.txt"
    lst.write_text(
        "\n".join(f"{synth}/{line}" for line in good) + "\nempty.mp4 0\ntruncated.mp4 1\nnotes.mp4 2\n"
    )
    return lst


def test_unreadable_videos_are_skipped_listed_and_limited(synth, tmp_path, monkeypatch):
    lst = _list_with_bad_files(synth, tmp_path)
    res = main(_pretrain(tmp_path / "run", lst, "data.max_bad_fraction=0.2"))
    assert res["steps"] == 2 and res["bad_steps"] == 0  # every item was replaced by a good video
    skipped = json.loads((tmp_path / "run" / "results.json").read_text())["skipped_files"]
    assert sorted(s.split(": ")[0] for s in skipped) == [
        str(tmp_path / n) for n in ("empty.mp4", "notes.mp4", "truncated.mp4")
    ]
    assert all(len(s.split(": ", 1)[1]) > 0 for s in skipped)  # each with its reason

    with pytest.raises(TooManyBadVideos, match="data.max_bad_fraction=0.1"):
        main(_pretrain(tmp_path / "strict", lst, "data.max_bad_fraction=0.1"))
    message = exit_message(monkeypatch, _pretrain(tmp_path / "strict2", lst, "data.max_bad_fraction=0.1"))
    assert "videos failed to decode" in message and str(tmp_path / "empty.mp4") in message


def test_bad_videos_in_a_folder_whose_name_holds_a_colon_count_one_by_one(synth, tmp_path):
    """The limit counts files by their own path, whatever characters the path holds."""
    folder = tmp_path / "broken: videos"
    folder.mkdir()
    lst = _list_with_bad_files(synth, folder)
    with pytest.raises(TooManyBadVideos, match=r"3 of 16 videos failed to decode") as info:
        main(_pretrain(tmp_path / "run", f"'{lst}'", "data.max_bad_fraction=0.15"))  # quoted: YAML reads a: b
    for name in ("empty.mp4", "notes.mp4", "truncated.mp4"):
        assert str(folder / name) in str(info.value)


def test_evaluation_reports_bad_videos_and_stops_past_the_limit(synth, tmp_path, capsys):
    lst = _list_with_bad_files(synth, tmp_path)
    data = [f"data.train_list={synth / 'train.txt'}", f"data.val_list={lst}"]
    main(
        [
            "retrieve",
            "--config",
            "tiny",
            "-o",
            str(tmp_path / "run"),
            *RUN,
            *data,
            "data.max_bad_fraction=0.2",
        ]
    )
    printed = "".join(capsys.readouterr())
    assert "val: 3 of 16 videos failed to decode and are left out" in printed, printed
    skipped = json.loads((tmp_path / "run" / "results.json").read_text())["skipped"]
    assert skipped["train"] == []
    assert sorted(s.split(": ")[0] for s in skipped["val"]) == [
        str(tmp_path / n) for n in ("empty.mp4", "notes.mp4", "truncated.mp4")
    ]
    with pytest.raises(TooManyBadVideos, match=r"3 of 16 videos failed to decode.*max_bad_fraction=0\.1"):
        main(
            [
                "retrieve",
                "--config",
                "tiny",
                "-o",
                str(tmp_path / "strict"),
                *RUN,
                *data,
                "data.max_bad_fraction=0.1",
            ]
        )


# ------------------------------------------------------------------------------------------------ checkpoints
def _encoder_export(tmp_path, *overrides):
    cfg = load_config("tiny", [*MODEL, *overrides])
    return save_weights(build_model(cfg).video_encoder, tmp_path / "encoder.safetensors", cfg.model)


def test_init_from_an_encoder_of_another_width_is_an_error(synth, tmp_path, monkeypatch):
    path = _encoder_export(tmp_path, "model.width=96")
    with pytest.raises(
        CheckpointError, match=r"encoder\.safetensors: nothing in it fits a video encoder.*another shape"
    ):
        main(_pretrain(tmp_path / "run", synth / "train.txt", f"init.video={path}"))
    assert "nothing in it fits" in exit_message(
        monkeypatch, _pretrain(tmp_path / "run2", synth / "train.txt", f"init.video={path}")
    )


def test_init_from_a_deeper_encoder_loads_what_fits_and_reports_the_rest(tmp_path, capsys):
    path = _encoder_export(tmp_path, "model.depth=3")
    model, _ = build_pretraining(load_config("tiny", [*MODEL, f"init.video={path}"]))
    report = capsys.readouterr().out
    assert (
        "loaded video weights" in report and "unexpected (12): blocks.* (x12)" in report
    )  # block 2 has no place
    saved = load_checkpoint(path)
    own = model.video_encoder.state_dict()
    assert all(torch.equal(own[k], saved[k]) for k in own if k in saved) and "blocks.1.attn.qkv.weight" in own


@pytest.mark.parametrize("damage", ["half-the-tensors", "a-wrong-shape"])
def test_partial_weights_are_an_error_unless_allowed(synth, tmp_path, monkeypatch, damage):
    """An encoder file that fills only part of the encoder: convert and init.video= refuse it (nothing is
    written, no training starts) unless --allow-partial / init.allow_partial=true."""
    from safetensors.torch import load_file, save_file

    whole = _encoder_export(tmp_path)
    state = load_file(whole)
    if damage == "half-the-tensors":
        state = {k: state[k] for k in sorted(state)[::2]}
    else:
        state["blocks.0.mlp.fc1.weight"] = state["blocks.0.mlp.fc1.weight"][:-1]
    path = tmp_path / "partial.safetensors"
    save_file(state, path, metadata={"format": "crossvideomae.video_encoder"})
    path.with_suffix(".json").write_bytes(whole.with_suffix(".json").read_bytes())

    message = exit_message(monkeypatch, ["convert", str(path), "-o", str(tmp_path / "c")])
    assert re.search(
        r"partial\.safetensors: fills \d+ of \d+ tensors of the video encoder.*--allow-partial", message
    )
    assert "\n" not in message and not (tmp_path / "c" / "video_encoder.safetensors").exists()
    res = main(["convert", str(path), "-o", str(tmp_path / "c2"), "--allow-partial"])
    assert res["missing"] or res["mismatched"]

    run = _pretrain(tmp_path / "run", synth / "train.txt", f"init.video={path}", "train.steps_per_epoch=1")
    message = exit_message(monkeypatch, run)
    assert "fills" in message and "init.allow_partial=true" in message and "\n" not in message
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    assert main([*run, "init.allow_partial=true"])["steps"] == 1


def test_init_from_a_damaged_or_missing_file_names_it(tmp_path):
    save_checkpoint(tmp_path / "whole.pth", {"model": {"w": torch.randn(1000)}})
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pth").write_text("hello world\n")
    for name, match in (
        ("truncated.pth", r"truncated\.pth: not a readable checkpoint"),
        ("text.pth", r"text\.pth: not a readable checkpoint"),
        ("absent.pth", r"not found: .*absent\.pth"),
    ):
        with pytest.raises(CheckpointError, match=match):
            build_pretraining(load_config("tiny", [*MODEL, f"init.video={tmp_path / name}"]))


def test_resume_with_another_architecture_names_the_checkpoint_and_keeps_the_run(
    synth, finished, monkeypatch
):
    before = _snapshot(finished)
    argv = _pretrain(
        finished, synth / "train.txt", "train.steps_per_epoch=1", "train.epochs=2", "model.depth=3"
    )
    with pytest.raises(CheckpointError, match=r"checkpoint-last\.pth: does not fit the model .*config\.yaml"):
        main([*argv, "--resume"])
    after = _snapshot(finished)
    # the resumed invocation's config replaced config.yaml; the run's own is kept beside it
    assert after.pop("config-1.yaml") == before["config.yaml"]
    assert {k: v for k, v in after.items() if k != "config.yaml"} == {
        k: v for k, v in before.items() if k != "config.yaml"
    }
    (finished / "config.yaml").write_bytes((finished / "config-1.yaml").read_bytes())
    (finished / "config-1.yaml").unlink()


# ------------------------------------------------------------------------------------------------ run folders
@pytest.mark.parametrize(
    "extra, match",
    [
        (["model.sise=3"], r"config key 'model\.sise'"),
        (["train.epochs=0"], r"config key 'train\.epochs': must be >= 1"),
        (["mask.video_ratio=1.5"], r"config key 'mask\.video_ratio'"),
        (["optim.lr=nan"], r"config key 'optim\.lr': must be finite"),
        (["data.crop_scale=[0.5]"], r"config key 'data\.crop_scale'"),
        (["data.batch_size=-1", "--resume"], r"config key 'data\.batch_size'"),
        ([], r"holds the checkpoints of an earlier run; add --resume"),  # a fresh run into a used folder
    ],
    ids=[
        "unknown-key",
        "epochs-0",
        "ratio-1.5",
        "lr-nan",
        "tuple-length",
        "resume-negative-batch",
        "no-resume",
    ],
)
def test_refused_command_writes_nothing_into_an_earlier_run(synth, finished, extra, match):
    before = _snapshot(finished)
    with pytest.raises(SystemExit, match=match):
        main(_pretrain(finished, synth / "train.txt", *extra))
    assert _snapshot(finished) == before


def test_failing_resume_keeps_checkpoints_results_and_the_previous_config(synth, finished, tmp_path):
    before = _snapshot(finished)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ListError, match="no videos listed"):
        main(_pretrain(finished, empty, "train.steps_per_epoch=1", "--resume"))
    after = _snapshot(finished)
    assert after.pop("config-1.yaml") == before["config.yaml"]  # kept under a numbered name
    assert {k: v for k, v in after.items() if k != "config.yaml"} == {
        k: v for k, v in before.items() if k != "config.yaml"
    }
    assert "empty.txt" in (finished / "config.yaml").read_text()  # config.yaml: the latest invocation
    assert load_checkpoint(finished / "checkpoint-last.pth")["step"] == 1
    (finished / "config.yaml").write_bytes((finished / "config-1.yaml").read_bytes())
    (finished / "config-1.yaml").unlink()


def test_user_errors_end_the_program_with_a_message_not_a_traceback(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "crossvideomae", *_pretrain(tmp_path / "run", empty)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert f"crossvideomae pretrain: {empty}: no videos listed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_only_training_commands_take_resume_and_no_command_overwrites_another_ones_results(
    synth, finished, tmp_path, capsys
):
    """``--resume`` exists where a command continues a run; an evaluation never writes into a training run, nor
    into a folder holding another command's results."""
    from crossvideomae.cli import COMMANDS, _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    listed = {name for name in COMMANDS if "--resume" in sub.choices[name].format_help()}
    assert listed == {"pretrain", "pretrain-image", "adapt", "finetune"}
    before = _snapshot(finished)
    retrieve = ["retrieve", "--config", "tiny", *RUN, f"data.train_list={synth / 'train.txt'}",
                f"data.val_list={synth / 'train.txt'}", f"eval.checkpoint={finished / 'checkpoint-last.pth'}"]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main([retrieve[0], "-o", str(finished), "--resume", *retrieve[1:]])
    assert info.value.code == 2 and "unrecognized arguments: --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="holds the checkpoints of an earlier run"):
        main([retrieve[0], "-o", str(finished), *retrieve[1:]])
    assert _snapshot(finished) == before
    data = _snapshot(synth)  # the synthetic dataset's folder holds results.json of `synth`
    with pytest.raises(SystemExit, match=r"holds the results of `crossvideomae synth`.*nothing was written"):
        main([retrieve[0], "-o", str(synth), *retrieve[1:]])
    assert _snapshot(synth) == data


def _user_error(case, synth, tmp_path, request):
    """(argv, a regex the one-line message matches) of each user error."""
    run = tmp_path / "run"
    videos = [line.rsplit(maxsplit=1)[0] for line in (synth / "train.txt").read_text().splitlines()]
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{synth / v} {i % 2}\n" for i, v in enumerate(videos)))
    if case == "empty-train-list":
        return _pretrain(run, ""), r"data\.train_list.* empty"
    if case == "list-shorter-than-a-batch":
        lst.write_text("".join(f"{synth / v} 0\n" for v in videos[:3]))
        return _pretrain(run, lst), r"3 videos.*data\.batch_size=8"
    if case == "malformed-kinds":
        (tmp_path / "list_kinds.txt").write_text(f"{videos[0]} round\n")
        return _pretrain(run, lst), r"list_kinds\.txt:1: expected 'path kind'"
    if case in ("negative-label", "label-beyond-label-map"):
        bad = "-1" if case == "negative-label" else "7"
        lst.write_text(f"{synth / videos[0]} 0\n{synth / videos[1]} {bad}\n")
        (tmp_path / "label_map.json").write_text(json.dumps({"classes": ["a", "b"]}))
        argv = [
            "linprobe",
            "--config",
            "tiny",
            "-o",
            str(run),
            *RUN,
            f"data.train_list={lst}",
            f"data.val_list={lst}",
        ]
        return argv, rf"list\.txt:2: label {bad} is not a class index.*0 to 1"
    if case == "convert-dest-not-safetensors":
        export = _encoder_export(tmp_path)
        return [
            "convert",
            str(export),
            "-o",
            str(run),
            "--dest",
            str(tmp_path / "enc.pth"),
        ], r"--dest .*\.safetensors"
    if case == "output-is-a-file":
        run.write_text("")
        return _pretrain(run, lst), r"--output-dir .*run is a file"
    if case == "output-under-proc":
        return _pretrain(
            "/proc/crossvideomae-run", lst
        ), r"cannot write into --output-dir /proc/crossvideomae-run"
    if case == "output-on-a-read-only-file-system":
        ro = mount_tmpfs(tmp_path / "ro", "ro,size=1m", request)
        return _pretrain(ro / "run", lst), r"cannot write into --output-dir .*Read-only file system"
    if case == "cuda-without-cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        return _pretrain(run, lst, "train.device=cuda"), r"config key 'train\.device': .*no CUDA"
    raise AssertionError(case)


USER_ERRORS = [
    "empty-train-list", "list-shorter-than-a-batch", "malformed-kinds", "negative-label", "label-beyond-label-map",
    "convert-dest-not-safetensors", "output-is-a-file", "output-under-proc", "output-on-a-read-only-file-system",
    "cuda-without-cuda",
]  # fmt: skip


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_error_exits_with_one_line_naming_the_problem(synth, tmp_path, monkeypatch, request, case):
    argv, match = _user_error(case, synth, tmp_path, request)
    message = exit_message(monkeypatch, argv)
    assert "\n" not in message and "Traceback" not in message, message
    assert re.search(match, message), message


def test_an_empty_override_value_is_the_empty_string():
    cfg = load_config("tiny", ["eval.checkpoint=", "data.root="])
    assert cfg.eval.checkpoint == "" and cfg.data.root == ""
    with pytest.raises(ConfigError, match=r"config key 'train\.epochs'"):
        load_config("tiny", ["train.epochs="])


# ------------------------------------------------------------------------------------------------ config rules
# str fields that name files or folders: checked where they are opened (ListError / CheckpointError name them)
PATHS = {
    "data.train_list", "data.val_list", "data.root", "data.presampled", "data.image_source",
    "init.video", "init.image", "init.model", "eval.checkpoint",
}  # fmt: skip


def test_every_config_field_has_a_rule():
    """bool fields are fully checked by their type; every other field needs a rule in config._rules."""
    ruled = {key for key, _, _ in _rules(Config())}
    unruled = []
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):
            key = f"{section.name}.{f.name}"
            if f.type not in ("bool", bool) and key not in PATHS and key not in ruled:
                unruled.append(key)
    assert not unruled, f"fields without a validation rule in config._rules: {unruled}"


@pytest.mark.parametrize(
    "override",
    [
        "model.patch_size=0",
        "model.decoder_heads=0",
        "model.heads=5",
        "model.mlp_ratio=-1",
        "train.seed=-1",
        "aug.randaugment=rand-x9",
        "data.std=[0.2,0.2,inf]",
        "synth.fps=0",
        "optim.betas=[0.9]",
    ],
)
def test_out_of_range_values_name_the_key_and_never_crash(override):
    with pytest.raises(ConfigError, match=rf"config key '{override.split('=')[0]}'"):
        load_config("tiny", [override])
