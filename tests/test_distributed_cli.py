"""Commands under torchrun-style launches (2 gloo processes) on generated videos: DDP and FSDP pretraining,
rank-0-only outputs, full-state checkpoints, resume on another number of processes, fine-tuning and extraction."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, make_synth, read_metrics
from safetensors.torch import load_file
from test_distributed import run_on_two_ranks
from torch.utils.data import DistributedSampler

from crossvideomae.cli import main
from crossvideomae.config import load_config
from crossvideomae.engine.checkpoint import load_checkpoint
from crossvideomae.engine.distributed import global_batches_done
from crossvideomae.models import build_model

RUN = ["data.num_workers=0", "train.log_every=1", "optim.warmup_epochs=1", "data.num_sampled_frames=1"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, num_train=16, num_val=7, num_frames=8)


def _args(command, synth, out, *extra):
    data = [f"data.train_list={synth}/train.txt", f"data.val_list={synth}/val.txt"]
    return [command, "-c", "tiny", "-o", str(out), *TINY, *RUN, *data, *extra]


def _commands(runs: list[list[str]]) -> list[dict]:
    return [main(argv) for argv in runs]


@pytest.fixture(scope="module")
def launched(synth, tmp_path_factory):
    """One 2-process launch running DDP pretraining, FSDP pretraining, fine-tuning and extraction."""
    root = tmp_path_factory.mktemp("runs")
    runs = {
        "ddp": _args("pretrain", synth, root / "ddp", "data.batch_size=4", "train.epochs=2", "train.keep_checkpoints=5",
                     "optim.lr=0", "optim.base_lr=1e-3"),
        "fsdp": _args("pretrain", synth, root / "fsdp", "data.batch_size=4", "train.epochs=1", "dist.fsdp=true",
                      "optim.lr=0", "optim.base_lr=1e-3"),
        "finetune": _args("finetune", synth, root / "finetune", "data.batch_size=4", "eval.epochs=1",
                          "eval.repeated_aug=1", "eval.batch_size=3"),
        "extract": _args("extract", synth, root / "extract", "eval.batch_size=3"),
    }  # fmt: skip
    results = run_on_two_ranks(_commands, list(runs.values()), tmp_path=root)
    return root, runs, dict(zip(runs, results, strict=True))


def test_ddp_pretraining_writes_once_and_scales_the_batch(launched):
    root, _, results = launched
    res = results["ddp"]
    assert res["world_size"] == 2 and res["global_batch"] == 8 and res["steps"] == 4  # 16 videos / 8 per step
    assert res["peak_lr"] == pytest.approx(1e-3 * 8 / 256)  # base_lr scaled by the global batch
    assert [r["step"] for r in read_metrics(root / "ddp")] == [1, 2, 3, 4]  # rank 0 alone writes
    assert len(json.loads((root / "ddp" / "results.json").read_text())["history"]) == 2
    ckpt = load_checkpoint(root / "ddp" / "checkpoint-2.pth")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 4
    plain = build_model(load_config("tiny", TINY)).state_dict()
    assert ckpt["model"].keys() == plain.keys()  # no DDP "module." prefix


def test_fsdp_checkpoint_holds_the_full_state_of_a_single_process(launched):
    root, _, results = launched
    assert results["fsdp"]["world_size"] == 2
    ddp = load_checkpoint(root / "ddp" / "checkpoint-1.pth")
    fsdp = load_checkpoint(root / "fsdp" / "checkpoint-1.pth")
    assert fsdp["model"].keys() == ddp["model"].keys()
    for k, v in ddp["model"].items():
        assert fsdp["model"][k].shape == v.shape, k
        assert not hasattr(fsdp["model"][k], "full_tensor"), k  # plain tensors, not DTensor shards
    assert (
        fsdp["optimizer"]["param_groups"] == ddp["optimizer"]["param_groups"]
    )  # same positions and settings
    for i, s in ddp["optimizer"]["state"].items():
        assert fsdp["optimizer"]["state"][i]["exp_avg"].shape == s["exp_avg"].shape, i
    encoder = load_file(root / "fsdp" / "video_encoder.safetensors")  # exported from the gathered model
    assert all(torch.equal(encoder[k], fsdp["model"][f"video_encoder.{k}"]) for k in encoder)
    assert any((root / "fsdp" / "pictures").glob("reconstruction-*.png"))


@pytest.mark.parametrize("run", ["ddp", "fsdp"])
def test_resume_in_one_process(launched, run):
    """A 2-process checkpoint continues in 1 process with another batch: same epoch, steps in this world."""
    root, runs, _ = launched
    argv = [a for a in runs[run] if not a.startswith(("train.epochs", "data.batch_size", "dist.fsdp"))]
    done = load_checkpoint(root / run / "checkpoint-last.pth")["epoch"]
    res = main([argv[0], "--resume", *argv[1:], f"train.epochs={done + 1}", "data.batch_size=8"])
    assert res["world_size"] == 1 and res["epochs"] == done + 1
    assert res["steps"] == (done + 1) * 2  # 16 videos in batches of 8
    assert [r["step"] for r in read_metrics(root / run)] == list(range(1, res["steps"] + 1))  # continued


def test_resume_with_another_batch_recounts_the_steps(synth, tmp_path):
    """Same world size, another per-GPU batch: the lr schedule continues at the same fraction of training."""
    argv = _args("pretrain", synth, tmp_path, "train.epochs=2", "optim.warmup_epochs=0")
    main([*argv, "data.batch_size=4", "train.epochs=1"])  # 4 steps of 4
    res = main([argv[0], "--resume", *argv[1:], "data.batch_size=8"])  # then 2 steps of 8 per epoch
    assert res["steps"] == 4  # epoch 1 of 2 done = step 2 of 4, then 2 more
    last = read_metrics(tmp_path)[-1]
    assert last["step"] == 4 and last["lr"] > 0


def test_finetune_on_two_ranks(launched):
    _, _, results = launched
    res = results["finetune"]
    assert res["world_size"] == 2 and res["global_batch"] == 8
    assert res["test"]["views"] == 2 and res["test"]["num_samples"] == 7  # every val video once, gathered
    assert sum(map(sum, res["test"]["confusion_matrix"])) == 7


def test_extract_on_two_ranks_matches_one_process(launched, synth, tmp_path):
    root, runs, _ = launched
    one = tmp_path / "one"
    main(["extract", "-c", "tiny", "-o", str(one), *runs["extract"][5:]])
    two = load_file(root / "extract" / "features.safetensors")
    ref = load_file(one / "features.safetensors")
    assert two["features"].shape[0] == 7
    torch.testing.assert_close(two["features"], ref["features"], rtol=1e-4, atol=1e-5)
    assert torch.equal(two["label"], ref["label"])
    assert (root / "extract" / "index.csv").read_text() == (one / "index.csv").read_text()


@pytest.mark.parametrize("world,new_world", [(2, 1), (1, 2), (2, 4), (4, 3)])
def test_resume_position_covers_the_same_samples(world, new_world):
    """After k batches of b on W ranks the ranks have read the first k*b*W positions of the epoch's permutation;
    the converted count on W' ranks starts reading where that left off."""
    n, b, b_new, k = 48, 3, 2, 3

    def read(w, bs, batches):
        return sorted(
            i
            for r in range(w)
            for i in list(DistributedSampler(range(n), w, r, seed=5, drop_last=True))[: bs * batches]
        )

    perm = list(DistributedSampler(range(n), 1, 0, seed=5))
    assert read(world, b, k) == sorted(perm[: k * b * world])
    k_new = global_batches_done(k, b, world, b_new, new_world)
    assert read(new_world, b_new, k_new) == sorted(perm[: k_new * b_new * new_world])
    assert k * b * world - b_new * new_world < k_new * b_new * new_world <= k * b * world
