"""The loader's batches made ready one step ahead (crossvideomae.engine.prefetch, ``data.prefetch``)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_RUN, make_synth, read_metrics

from crossvideomae.cli import main
from crossvideomae.engine.prefetch import DeviceFeed


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, num_train=16, num_val=4, num_frames=12)


def _logged_inputs(calls: list[int]):
    def inputs(batch):
        calls.append(int(batch["i"]))
        return {**batch, "ready": batch["i"] * 10}

    return inputs


def test_advance_prepares_the_next_batch_before_it_is_taken():
    calls: list[int] = []
    feed = DeviceFeed(
        iter([{"i": torch.tensor(k)} for k in range(3)]), torch.device("cpu"), _logged_inputs(calls)
    )
    first = next(feed)
    assert calls == [0] and int(first["ready"]) == 0
    feed.advance()
    feed.advance()  # once per batch: a second call fetches nothing more
    assert calls == [0, 1]
    assert int(next(feed)["ready"]) == 10 and calls == [0, 1]  # taken as prepared, not prepared again
    assert int(next(feed)["ready"]) == 20
    feed.advance()  # past the end: the loader is exhausted, the feed ends
    with pytest.raises(StopIteration):
        next(feed)


def test_without_ahead_each_batch_is_prepared_when_taken_and_a_stop_marker_passes_through():
    calls: list[int] = []
    feed = DeviceFeed(iter([{"i": torch.tensor(0)}, None]), torch.device("cpu"), _logged_inputs(calls), False)
    next(feed)
    feed.advance()
    assert calls == [0]
    assert next(feed) is None  # until_stopped's marker after a stop signal, not given to inputs
    assert calls == [0]


def test_on_its_thread_the_next_batch_is_prepared_away_from_the_caller_and_its_error_reaches_it():
    import threading

    where: list[int] = []

    def inputs(batch):
        where.append(threading.get_ident())
        if int(batch["i"]) == 2:
            raise ValueError("bad batch 2")
        return batch

    feed = DeviceFeed(
        iter([{"i": torch.tensor(k)} for k in range(3)]), torch.device("cpu"), inputs, True, True
    )
    assert int(next(feed)["i"]) == 0 and where == [threading.get_ident()]  # nothing ahead: taken here
    feed.advance()
    assert int(next(feed)["i"]) == 1 and where[1] != threading.get_ident()
    feed.advance()
    with pytest.raises(ValueError, match="bad batch 2"):
        next(feed)
    feed.close()


def _pretrain(synth, out, *extra):
    data = [f"data.train_list={synth / 'train.txt'}", "data.augment=device", "data.repeated_sampling=2"]
    main(["pretrain", "--config", "tiny", "-o", str(out), *TINY_RUN, *data, *extra])
    return read_metrics(out)


def test_device_augmentation_one_step_ahead_leaves_every_loss_as_it_was(synth, tmp_path):
    """The augmentation of the next batch runs before this step's update: it draws nothing from the training's
    random streams (masks, drop-path), so the run is the run without prefetching, step for step."""
    ahead = _pretrain(synth, tmp_path / "ahead", "train.epochs=2", "data.prefetch=true")
    thread = _pretrain(synth, tmp_path / "thread", "train.epochs=2", "data.prefetch_thread=true")
    taken = _pretrain(synth, tmp_path / "taken", "train.epochs=2", "data.prefetch=false")
    assert len(ahead) == 4 and ahead == taken and thread == taken


@pytest.mark.parametrize("thread", [False, True])
def test_resume_with_a_batch_prepared_ahead_repeats_the_uninterrupted_run(synth, tmp_path, thread):
    """At an epoch's end the next epoch's first batch is already augmented when the checkpoint is written; the
    resumed run fetches and augments it again, and every later loss is the uninterrupted run's. On its thread,
    the batch is settled before the checkpoint reads the random state that its augmentation forks."""
    import shutil

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    keep = ("train.keep_checkpoints=4", "train.epochs=3", f"data.prefetch_thread={str(thread).lower()}")
    rows = _pretrain(synth, full, *keep)
    resumed.mkdir()
    shutil.copy(full / "checkpoint-1.pth", resumed / "checkpoint-1.pth")  # as if it had died after epoch 1
    assert _pretrain(synth, resumed, *keep, "--resume") == [r for r in rows if r["step"] > 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_batch_prepared_on_the_side_stream_equals_one_prepared_when_taken(synth):
    from crossvideomae.config import load_config
    from crossvideomae.data import build_pretrain_dataset, pretrain_collate
    from crossvideomae.data.device_augment import DeviceAugment

    cfg = load_config(
        "tiny",
        [*TINY_RUN, f"data.train_list={synth / 'train.txt'}", "data.augment=device", "train.device=cuda"],
    ).validate()
    ds = build_pretrain_dataset(cfg)
    ds.set_epoch(0)
    host = [pretrain_collate([ds[i] for i in range(k, k + 4)]) for k in (0, 4, 8)]
    device = torch.device("cuda")
    busy = torch.randn(4096, 4096, device=device)
    got, streams = [], []
    for ahead, thread in ((True, False), (False, False), (True, True)):
        feed = DeviceFeed(iter([dict(b) for b in host]), device, DeviceAugment(cfg), ahead, thread)
        streams.append(feed.stream)
        out = []
        for batch in feed:
            busy = (busy @ busy).tanh_()  # a step on the main stream while the next batch is prepared
            feed.advance()
            out.append({k: batch[k].clone() for k in ("video1", "video2", "images")})
        got.append(out)
    assert streams[0] is not None and streams[1] is None and len(got[0]) == 3
    for taken in got[1:]:
        for a, b in zip(got[0], taken, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)


def test_repeated_sampling_counts_every_clip_in_the_learning_rate(synth, tmp_path):
    """With data.repeated_sampling = r a batch of B videos is B * r clips; the lr rule (base_lr * global batch /
    256) counts them, as MAE-ST's eff_batch_size does (batch_size * accum_iter * world_size * repeat_aug)."""
    _pretrain(synth, tmp_path / "r2", "train.epochs=1", "optim.lr=0", "optim.base_lr=1e-3")  # lr by the rule
    res = json.loads((tmp_path / "r2" / "results.json").read_text())
    assert res["global_batch"] == 8 * 2  # data.batch_size=8 videos, 2 clips each
    assert res["peak_lr"] == pytest.approx(1e-3 * 16 / 256)
