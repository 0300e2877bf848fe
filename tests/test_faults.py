"""Faults during training: kill -9, SIGTERM, non-finite steps, a full disk while checkpointing.

Every run is the same tiny pretraining (3 epochs of 4 steps on 32 generated videos), so one uninterrupted run
is the reference that an interrupted-and-resumed run must match bit for bit: weights and every metrics line.
kill -9 and SIGTERM hit a real ``python -m crossvideomae`` process; the other faults are injected in-process.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_RUN, exit_message, make_synth, mount_tmpfs, read_metrics

import crossvideomae.data
from crossvideomae.cli import entry, main
from crossvideomae.engine.checkpoint import latest_checkpoint, load_checkpoint
from crossvideomae.engine.train import NonFiniteLossError

TINY = [*TINY_RUN, "train.epochs=3", "train.keep_checkpoints=5"]
STEPS = 12  # 3 epochs x 32 videos / 8


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, num_train=32, num_val=8, num_frames=12)


def _args(synth, out, *extra):
    data = [f"data.train_list={synth / 'train.txt'}", f"data.val_list={synth / 'val.txt'}"]
    return ["pretrain", "--config", "tiny", "-o", str(out), *TINY, *data, *extra]


def _weights(run):
    return load_checkpoint(run / "checkpoint-last.pth")["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(synth, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    res = main(_args(synth, out))
    assert res["steps"] == STEPS and res["bad_steps"] == 0
    return out


def _launch(synth, out, *extra):
    """``python -m crossvideomae pretrain`` as its own process (and process group), its output in ``out``.log."""
    log = open(f"{out}.log", "w")
    cmd = [sys.executable, "-m", "crossvideomae", *_args(synth, out, *extra)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, log


def _wait_for_step(proc, run, k, timeout=240):
    """Until metrics.jsonl holds a complete line of step >= k."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before step {k}"
        path = run / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        if any(line.endswith("}") and json.loads(line)["step"] >= k for line in lines):
            return
        time.sleep(0.02)
    raise TimeoutError(f"no step {k} in {timeout} s")


# ------------------------------------------------------------------------------------------ process killed
@pytest.mark.parametrize("every", [0, 3], ids=["epoch-checkpoints", "every-3-steps"])
def test_kill_9_at_a_random_step_then_resume_matches_the_uninterrupted_run(synth, reference, tmp_path, every):
    """With ``train.ckpt_every_steps=3`` the newest checkpoint may sit inside an epoch (steps 3, 6, 9 of 4-step
    epochs): a kill loses at most 3 steps, and the resumed run is still exact."""
    run = tmp_path / "run"
    # with step checkpoints: right after step 7 or 10, when the newest (6 or 9) sits inside an epoch
    k = random.choice([7, 10]) if every else random.randint(2, STEPS - 2)
    proc, log = _launch(synth, run, f"train.ckpt_every_steps={every}")
    _wait_for_step(proc, run, k)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"killed after step {k}"
    log.close()
    ckpt = latest_checkpoint(run)
    done = load_checkpoint(ckpt)["step"] if ckpt else 0
    logged = max(r["step"] for r in read_metrics(run))
    on_schedule = done % 4 == 0 or (every and done % every == 0)
    assert on_schedule and logged - (every or 4) <= done <= logged, (
        f"killed after step {logged}, saved {done}"
    )
    (run / ".checkpoint-last.pth.x1y2.tmp").write_bytes(b"half a checkpoint")  # a write the kill cut short

    res = main(_args(synth, run, "--resume"))
    assert res["steps"] == STEPS and res["epochs"] == 3, f"killed after step {k}"
    _assert_same_weights(_weights(run), _weights(reference))
    # one line per step: the lines of redone steps were dropped on resume, the rest are exact
    assert read_metrics(run) == read_metrics(reference), f"killed after step {k}, resumed from step {done}"
    assert json.loads((run / "results.json").read_text())["history"] == res["history"]
    assert res["history"] == json.loads((reference / "results.json").read_text())["history"]
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


def test_step_checkpoints_land_between_steps_and_epoch_ends_still_save(synth, tmp_path, monkeypatch):
    import crossvideomae.engine.train as train

    saved, real = [], train.save_checkpoint

    def spy(path, ckpt):
        saved.append((path.name, ckpt["step"], ckpt["batch_in_epoch"]))
        real(path, ckpt)

    monkeypatch.setattr(train, "save_checkpoint", spy)
    main(_args(synth, tmp_path, "train.ckpt_every_steps=3"))
    last = "checkpoint-last.pth"
    assert saved == [  # at epoch ends checkpoint-last.pth becomes a second name of checkpoint-N.pth
        (last, 3, 3),  # inside epoch 0, before step 4
        ("checkpoint-1.pth", 4, 0),
        (last, 6, 2),
        ("checkpoint-2.pth", 8, 0),
        (last, 9, 1),
        ("checkpoint-3.pth", 12, 0),  # step 12 is due too: the end-of-run checkpoint covers it
    ]
    assert (tmp_path / last).samefile(tmp_path / "checkpoint-3.pth")


@pytest.mark.parametrize(
    "room, kept",
    [(1.5, [1]), (3.08, [1, 2, 3])],
    ids=["in-checkpoint-2", "in-the-encoder-export"],
)
def test_a_real_full_disk_ends_with_the_message_and_keeps_what_was_written(
    synth, reference, tmp_path, monkeypatch, request, room, kept
):
    """The run folder on a small tmpfs (root only; skipped where mounting is not permitted) with room for
    ``room`` checkpoints, so the disk fills in another write each time. PyTorch's writer reports it as a
    RuntimeError ('unexpected pos'); the program says what the disk said."""
    size = (reference / "checkpoint-1.pth").stat().st_size
    disk = mount_tmpfs(tmp_path / "disk", f"size={int(size * room) + (64 << 10)}", request)
    run = disk / "run"
    message = exit_message(monkeypatch, _args(synth, run))
    assert (
        message.startswith("crossvideomae pretrain: [Errno 28] No space left on device")
        and "\n" not in message
    )
    assert "Free some space, then run the command again (with --resume" in message
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left behind
    names = [*(f"checkpoint-{e}.pth" for e in kept), "checkpoint-last.pth"]
    assert sorted(p.name for p in run.glob("checkpoint-*.pth")) == names
    for e in kept:  # what was written before is intact
        assert load_checkpoint(run / f"checkpoint-{e}.pth")["step"] == 4 * e
    assert load_checkpoint(run / "checkpoint-last.pth")["step"] == 4 * kept[-1]


# ------------------------------------------------------------------------------------------ damaged checkpoints
def _damage(run, name, how):
    """Replace a checkpoint by a truncated copy or by a pickle that weights-only loading refuses."""
    path = run / name
    if how == "truncated":
        data = (run / "checkpoint-1.pth").read_bytes()
        path.unlink(missing_ok=True)  # checkpoint-last.pth is a second name of an epoch file: cut the link
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink(missing_ok=True)
        torch.save({"step": 99, "note": pathlib.PurePosixPath("runs")}, path)  # a class weights_only refuses


def test_resume_falls_back_past_damaged_checkpoints_and_rotation_keeps_the_newest_good_one(
    synth, reference, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    _damage(run, "checkpoint-last.pth", "truncated")
    _damage(run, "checkpoint-3.pth", "refused")
    _damage(run, "checkpoint-7.pth", "truncated")  # left by an earlier, longer attempt
    capsys.readouterr()
    res = main(_args(synth, run, "train.keep_checkpoints=2", "--resume"))
    out = capsys.readouterr().out
    for name, why in (("checkpoint-last.pth", "not a readable"), ("checkpoint-3.pth", "refused to load"),
                      ("checkpoint-7.pth", "not a readable")):  # fmt: skip
        assert re.search(rf"--resume: skipped .*{name}: {why}", out), out
    assert f"resumed from {run / 'checkpoint-2.pth'}: epoch 2, step 8" in out
    assert res["steps"] == STEPS
    _assert_same_weights(_weights(run), _weights(reference))
    assert read_metrics(run) == read_metrics(reference)
    # kept by the steps they hold: the new checkpoint-3.pth and checkpoint-2.pth, not the damaged checkpoint-7.pth
    assert sorted(p.name for p in run.glob("checkpoint-*.pth")) == [
        "checkpoint-2.pth", "checkpoint-3.pth", "checkpoint-last.pth"
    ]  # fmt: skip


def test_resume_with_no_checkpoint_that_loads_names_them_and_changes_nothing(
    synth, reference, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    for name, how in (("checkpoint-last.pth", "refused"), ("checkpoint-1.pth", "truncated"),
                      ("checkpoint-2.pth", "truncated"), ("checkpoint-3.pth", "refused")):  # fmt: skip
        _damage(run, name, how)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "config.yaml"}
    message = exit_message(monkeypatch, _args(synth, run, "--resume"))
    assert (
        message.startswith(f"crossvideomae pretrain: --resume: no checkpoint in {run} loads")
        and "\n" not in message
    )
    for name in ("checkpoint-last.pth", "checkpoint-1.pth", "checkpoint-2.pth", "checkpoint-3.pth"):
        assert str(run / name) in message
    after = {
        p.name: p.read_bytes()
        for p in run.iterdir()
        if p.is_file() and p.name not in ("config.yaml", "config-1.yaml")
    }
    assert after == before  # checkpoints, metrics.jsonl and results.json as they were


# ------------------------------------------------------------------------------------------ preemption
def test_ctrl_c_saves_at_the_next_step_with_loader_workers_running(synth, reference, tmp_path):
    """A terminal's Ctrl-C reaches the whole process group, DataLoader workers included; the resumed run (with
    workers) ends as the uninterrupted one (without)."""
    run = tmp_path / "run"
    proc, log = _launch(synth, run, "data.num_workers=2")
    _wait_for_step(proc, run, 3)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    log.close()
    out = (run.parent / "run.log").read_text()
    stopped = load_checkpoint(run / "checkpoint-last.pth")["step"]
    assert out.count("Ctrl-C: saving a checkpoint at the next step boundary") == 1  # the workers ignore it
    assert f"SIGINT: checkpoint saved at step {stopped}; continue with --resume" in out
    assert 3 <= stopped < STEPS and "Traceback" not in out
    assert json.loads((run / "results.json").read_text())["stopped_by"] == "SIGINT"
    # one loader for the whole run, its 2 workers fetching across epoch ends, gives what no workers give
    res = main(_args(synth, run, "data.num_workers=2", "--resume"))
    assert res["steps"] == STEPS
    _assert_same_weights(_weights(run), _weights(reference))
    assert read_metrics(run) == read_metrics(reference)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (the DataLoader workers of a run)."""
    kids = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.parametrize("workers", ["ignore-it", "killed"])
def test_sigterm_to_the_process_group_with_loader_workers_saves_and_exits_cleanly(
    synth, reference, tmp_path, workers
):
    """``timeout -s TERM`` and SLURM's preemption signal the whole process group, DataLoader workers included.
    The workers ignore it and the main process saves at the next step boundary; when the workers die anyway
    (here: SIGKILL right after the SIGTERM), the main process still saves and exits 0."""
    run = tmp_path / "run"
    proc, log = _launch(synth, run, "data.num_workers=2")
    _wait_for_step(proc, run, 3)
    kids = _children(proc.pid)
    assert len(kids) == 2, kids
    os.killpg(proc.pid, signal.SIGTERM)
    if workers == "killed":
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) == 0, (run.parent / "run.log").read_text()[-3000:]
    log.close()
    out = (run.parent / "run.log").read_text()
    stopped = load_checkpoint(run / "checkpoint-last.pth")["step"]
    assert f"SIGTERM: checkpoint saved at step {stopped}; continue with --resume" in out
    assert 3 <= stopped < STEPS and "Traceback" not in out and "Error" not in out, out[-3000:]
    assert json.loads((run / "results.json").read_text())["stopped_by"] == "SIGTERM"
    res = main(_args(synth, run, "data.num_workers=2", "--resume"))
    assert res["steps"] == STEPS
    _assert_same_weights(_weights(run), _weights(reference))
    assert read_metrics(run) == read_metrics(reference)


def test_ctrl_c_under_torchrun_saves_one_checkpoint_for_both_ranks(synth, tmp_path):
    """A terminal's Ctrl-C reaches torchrun's agent and both ranks; the agent then sends SIGTERM to the ranks.
    They agree (an all-reduce of the flag) on the step to stop at, save it once and exit 0."""
    run = tmp_path / "run"
    log = open(f"{run}.log", "w")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "crossvideomae", *_args(synth, run, "train.epochs=20")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env
    )
    _wait_for_step(proc, run, 3)
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=120)
    log.close()
    out = (run.parent / "run.log").read_text()
    ckpt = load_checkpoint(run / "checkpoint-last.pth")
    stopped = ckpt["step"]
    assert ckpt["world_size"] == 2 and 3 <= stopped < 40, out[-3000:]
    assert f"checkpoint saved at step {stopped}; continue with --resume" in out, out[-3000:]
    assert json.loads((run / "results.json").read_text())["stopped_by"] in ("SIGINT", "SIGTERM")
    assert [r["step"] for r in read_metrics(run)] == list(range(1, stopped + 1))
    # 1: torchrun reports the signal it got (torch 2.14); not a kill
    assert code in (0, 1), f"torchrun exit status {code}"


def test_sigterm_saves_at_the_next_step_and_exits_cleanly_then_resume_is_exact(synth, reference, tmp_path):
    run = tmp_path / "run"
    k = random.choice([2, 5, 6, 9])  # the signal lands in step k + 1: inside an epoch
    proc, log = _launch(synth, run)
    _wait_for_step(proc, run, k)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, f"SIGTERM after step {k}"
    log.close()
    out = (run.parent / "run.log").read_text()
    ckpt = load_checkpoint(run / "checkpoint-last.pth")
    stopped = ckpt["step"]
    assert f"SIGTERM: checkpoint saved at step {stopped}; continue with --resume" in out
    assert k <= stopped < STEPS
    results = json.loads((run / "results.json").read_text())
    assert results["stopped_by"] == "SIGTERM" and results["steps"] == stopped
    assert not (run / "video_encoder.safetensors").exists()  # the end-of-run export waits for the real end

    res = main(_args(synth, run, "--resume"))
    assert res["steps"] == STEPS and res["stopped_by"] is None
    _assert_same_weights(_weights(run), _weights(reference))
    assert read_metrics(run) == read_metrics(reference), (
        f"SIGTERM after step {k}, checkpoint at step {stopped}"
    )
    # the epoch means too: the checkpoint carries the interrupted epoch's running sums
    assert res["history"] == json.loads((reference / "results.json").read_text())["history"]


# ------------------------------------------------------------------------------------------ non-finite steps
def _poison(monkeypatch, batches):
    """Put a NaN into the clips of the given (1-based) batches."""
    collate = crossvideomae.data.pretrain_collate
    calls = {"n": 0}

    def poisoned(items):
        batch = collate(items)
        calls["n"] += 1
        if calls["n"] in batches:
            batch["video1"][0, 0, 0, 0, 0] = float("nan")
        return batch

    monkeypatch.setattr(crossvideomae.data, "pretrain_collate", poisoned)


def test_one_nan_batch_is_skipped_and_counted(synth, tmp_path, monkeypatch):
    _poison(monkeypatch, {2})
    res = main(_args(synth, tmp_path, "train.epochs=1"))
    assert res["steps"] == 4 and res["bad_steps"] == 1
    assert json.loads((tmp_path / "results.json").read_text())["bad_steps"] == 1
    rows = read_metrics(tmp_path)
    assert [r["bad_steps"] for r in rows] == [0, 1, 1, 1]
    assert rows[1]["total"] != rows[1]["total"]  # NaN logged for the skipped step
    assert all(r["total"] == r["total"] for r in rows[2:])  # the run carries on, finite
    weights = _weights(tmp_path)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert res["final_terms"]["total"] == res["final_terms"]["total"]  # epoch mean over the good steps only


def test_consecutive_bad_steps_save_report_and_stop(synth, tmp_path, monkeypatch):
    _poison(monkeypatch, set(range(1, 100)))
    run = _args(synth, tmp_path, "train.max_bad_steps=2")
    with pytest.raises(
        NonFiniteLossError, match=r"2 consecutive non-finite steps, the last at step 2 .*'total': nan"
    ):
        main(run)
    ckpt = load_checkpoint(tmp_path / "checkpoint-last.pth")
    assert ckpt["step"] == 2 and ckpt["bad_steps"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # as a program: a message naming the step and the terms, exit status 1, no traceback
    monkeypatch.setattr(sys, "argv", ["crossvideomae", *run, "--resume"])
    with pytest.raises(SystemExit) as info:
        entry()
    assert info.value.code != 0 and "consecutive non-finite steps, the last at step 4" in str(info.value.code)
    assert "checkpoint saved to" in str(info.value.code)


# ------------------------------------------------------------------------------------------ disk full
def _no_space(*_):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "rename"])
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(
    synth, reference, tmp_path, monkeypatch, where
):
    """The epoch-2 checkpoint fails half-written (torch.save) or at the rename; epoch 1's stays loadable."""
    save, replace = torch.save, os.replace

    def half_then_full(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:  # checkpoint-2.pth comes first
            f.write(b"PK\x03\x04" + b"\0" * 4096)
            raise _no_space()
        return save(obj, f, *args, **kwargs)

    def rename_fails(src, dst):
        if str(dst).endswith("checkpoint-2.pth"):
            raise _no_space()
        return replace(src, dst)

    if where == "write":
        monkeypatch.setattr(torch, "save", half_then_full)
    else:
        monkeypatch.setattr(os, "replace", rename_fails)
    run = _args(synth, tmp_path)
    if where == "write":
        with pytest.raises(OSError) as info:
            main(run)
        assert info.value.errno == errno.ENOSPC
    else:  # as a program: a short message, exit status 1
        monkeypatch.setattr(sys, "argv", ["crossvideomae", *run])
        with pytest.raises(SystemExit) as info:
            entry()
        assert "No space left on device" in str(info.value.code) and "--resume" in str(info.value.code)
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["checkpoint-1.pth", "checkpoint-last.pth"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
    assert load_checkpoint(tmp_path / "checkpoint-last.pth")["step"] == 4
    assert latest_checkpoint(tmp_path).name == "checkpoint-last.pth"
    if where == "write":  # space freed: the run continues to the same end as the uninterrupted one
        res = main([*run, "--resume"])
        assert res["steps"] == STEPS
        _assert_same_weights(_weights(tmp_path), _weights(reference))
        assert read_metrics(tmp_path) == read_metrics(reference)


def test_a_stop_signal_and_a_worker_death_arriving_together_print_nothing():
    """SIGTERM to the process group and a worker killed at once: both signals are pending when Python runs its
    handlers, SIGTERM's first. Its handler switches the loader's SIGCHLD handler off; had it installed SIG_DFL,
    CPython would then print "OSError: Signal 17 ignored due to race condition" with a traceback into the log."""
    from crossvideomae.engine.stopping import StopFlag

    seen, unraisable = [], []
    old_chld = signal.signal(signal.SIGCHLD, lambda *a: seen.append("loader handler"))
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    stop = StopFlag()
    try:
        with stop.installed():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGCHLD)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGCHLD})
            for _ in range(3):  # let the interpreter run the pending handlers
                time.sleep(0.01)
    finally:
        sys.unraisablehook = old_hook
        signal.signal(signal.SIGCHLD, old_chld)
    assert stop.signal == signal.SIGTERM
    assert seen == [] and unraisable == [], [str(u.exc_value) for u in unraisable]


@pytest.mark.parametrize("error", [RuntimeError, ConnectionResetError, EOFError])
def test_a_worker_killed_mid_handover_after_a_stop_ends_the_batches_instead_of_the_run(error):
    """A worker killed while the main process receives its batch surfaces, depending on the moment, as the
    loader's RuntimeError, or as the ConnectionResetError / EOFError of the shared-memory handover's socket.
    After a stop signal every one of them ends the batches at this step boundary (one None); without a stop
    they propagate."""
    from crossvideomae.engine.stopping import StopFlag, until_stopped

    def batches():
        yield "batch 0"
        raise error("worker gone")

    stop = StopFlag()
    fetch = until_stopped(batches(), stop)
    assert next(fetch) == "batch 0"
    stop.signal = signal.SIGTERM
    assert list(fetch) == [None]
    with pytest.raises(error):
        list(until_stopped(batches(), StopFlag()))
