"""Data parallelism on the CPU: 2 processes with the gloo backend, set up as torchrun would (environment).

The reference for "correct" is one process holding the whole batch: a 2 x B/2 run must give the same loss terms
and, after DDP's (or FSDP's) gradient averaging, the same gradient of every parameter. Masking draws random
noise in each process, so both runs take the same per-sample masks from outside the model.
"""

from __future__ import annotations

import os
import pickle
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY

from crossvideomae.config import load_config
from crossvideomae.engine import distributed as D
from crossvideomae.losses import CrossVideoMAELoss
from crossvideomae.models import build_model

B = 8  # global batch
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn, args: tuple, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
    )
    torch.set_num_threads(1)
    D.init_distributed("gloo")
    result = fn(*args)
    if rank == 0:
        with open(out, "wb") as f:
            pickle.dump(result, f)
    # Leave together and explicitly: a rank that exits while the other still holds the group can die in gloo's
    # threads ("terminate called without an active exception", SIGABRT; seen once in a fresh clone, see
    # pytorch/pytorch#190489).
    D.barrier()
    dist.destroy_process_group()


def run_on_two_ranks(fn, *args, tmp_path):
    """``fn(*args)`` in 2 gloo processes; returns rank 0's result."""
    out = tmp_path / "rank0.pkl"
    for attempt in range(3):  # the free port can be taken between _free_port() and rank 0's bind: a new one
        try:
            mp.start_processes(
                _worker, (fn, args, _free_port(), str(out)), nprocs=WORLD, start_method="spawn"
            )
            break
        except mp.ProcessRaisedException as e:
            if "address already in use" not in str(e).lower() or attempt == 2:
                raise
    return pickle.loads(out.read_bytes())


# ------------------------------------------------------------------------------------ loss and gradients
def _cfg(global_negatives: bool = True):
    return load_config(
        None, [*TINY, "data.num_sampled_frames=2", f"loss.global_negatives={global_negatives}"]
    )


def _global_batch(cfg):
    """Inputs, video masks (2B, n) and image masks (B*F, n_i) of the whole batch, in float64."""
    m = cfg.model
    g = torch.Generator().manual_seed(1)
    F = cfg.data.num_sampled_frames
    clip = (B, 3, m.num_frames, m.img_size, m.img_size)
    batch = {
        "video1": torch.randn(clip, generator=g, dtype=torch.float64),
        "video2": torch.randn(clip, generator=g, dtype=torch.float64),
        "images": torch.randn(B, F, 3, m.img_size, m.img_size, generator=g, dtype=torch.float64),
        "frame_index1": torch.randint(0, m.num_frames, (B, F), generator=g),
        "frame_index2": torch.randint(0, m.num_frames, (B, F), generator=g),
    }
    torch.manual_seed(2)
    model = build_model(cfg)
    return batch, model.mask_video(2 * B, None), model.mask_image(B * F, None)


def step_terms(global_negatives: bool, fsdp: bool = False):
    """One forward + backward on this rank's share of the global batch: (global loss terms, full gradients)."""
    cfg = _cfg(global_negatives)
    batch, ids_v, ids_i = _global_batch(cfg)
    r, w = D.rank(), D.world_size()
    b, F = B // w, cfg.data.num_sampled_frames
    mine = slice(r * b, (r + 1) * b)
    local = {k: v[mine] for k, v in batch.items()}
    local_ids_v = torch.cat([ids_v[:B][mine], ids_v[B:][mine]])  # rows: view 1 of my samples, then view 2
    local_ids_i = ids_i[r * b * F : (r + 1) * b * F]

    torch.manual_seed(0)
    model = build_model(cfg).double()
    model.mask_video = lambda n, device: local_ids_v
    model.mask_image = lambda n, device: local_ids_i
    net, _ = D.wrap_model(model, torch.device("cpu"), fsdp=fsdp)
    terms = CrossVideoMAELoss(cfg.loss)(net(**local))
    terms["total"].backward()
    grads = {n: D.replicated(p.grad).clone() for n, p in model.named_parameters()}
    return D.mean_over_ranks({k: v.detach() for k, v in terms.items()}), grads


def _two_rank_cases():
    """Everything this file runs on 2 ranks, in one launch (starting processes is the slow part)."""
    return {
        "global": step_terms(True),
        "local": step_terms(False),
        "fsdp": step_terms(True, fsdp=True),
        "extract": _extract(7, ()),
        "extract_broken": _extract(9, (3,)),
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return run_on_two_ranks(_two_rank_cases, tmp_path=tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def reference():
    return step_terms(True)  # one process, the whole batch


def test_two_half_batches_give_the_loss_and_gradients_of_one_batch(cases, reference):
    ref_terms, ref_grads = reference
    for name in ("global", "fsdp"):
        terms, grads = cases[name]
        assert terms.keys() == ref_terms.keys()
        for k in ref_terms:
            assert terms[k] == pytest.approx(ref_terms[k], rel=1e-10, abs=1e-12), (name, k)
        assert grads.keys() == ref_grads.keys()
        for k in ref_grads:
            torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-8, atol=1e-12, msg=f"{name}: {k}")
    assert any(g.abs().max() > 0 for g in ref_grads.values())


def test_local_negatives_differ_from_the_global_batch(cases, reference):
    """With loss.global_negatives=false each rank contrasts against its own half only: the contrastive terms
    change (fewer negatives), the pixel terms do not."""
    ref_terms, _ = reference
    terms, _ = cases["local"]
    assert terms["intra_video"] < ref_terms["intra_video"] - 1e-3
    assert terms["cross_frame"] < ref_terms["cross_frame"] - 1e-3
    assert terms["rl"] == pytest.approx(ref_terms["rl"], rel=1e-10)


# ------------------------------------------------------------------------------------ extraction order
class _Items(torch.utils.data.Dataset):
    """Item i holds a feature that names it; items in ``broken`` are replaced by the next item, as the video
    datasets do for a file that fails to decode."""

    def __init__(self, n: int, broken: tuple[int, ...] = ()):
        self.n, self.broken = n, broken

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        j = i + 1 if i in self.broken else i
        item = {"video": torch.full((3, 2, 4, 4), float(j)), "label": j % 3, "index": j}
        return item | ({"skipped": [(f"video{i}.mp4", "broken")]} if i in self.broken else {})


def _collate(items: list[dict]) -> dict:
    skipped = [s for it in items for s in it.pop("skipped", [])]
    return torch.utils.data.default_collate(items) | {"skipped": skipped}


def _extract(n: int, broken: tuple[int, ...]):
    from crossvideomae.eval.features import eval_loader, extract_features

    loader = eval_loader(_Items(n, broken), batch_size=2, num_workers=0, collate_fn=_collate)
    encoder = torch.nn.Flatten()  # (B, 3, 2, 4, 4) -> (B, 96), every value = the item's index
    rows, skipped = extract_features({"f": encoder}, loader, torch.device("cpu"))
    return {"local": len(loader.sampler), **{k: v for k, v in rows.items()}, "skipped": skipped}


def test_extraction_on_two_ranks_is_in_dataset_order_without_padding(cases):
    plain = cases["extract"]
    assert plain["local"] == 4  # 7 items on 2 ranks: the sampler pads one duplicate
    assert plain["index"].tolist() == list(range(7))
    assert plain["f"].shape == (7, 96) and torch.equal(plain["f"][:, 0], torch.arange(7.0))
    assert plain["label"].tolist() == [i % 3 for i in range(7)]
    broken = cases["extract_broken"]  # item 3 fails and is replaced by item 4: 4 is kept once, 3 is left out
    assert broken["index"].tolist() == [0, 1, 2, 4, 5, 6, 7, 8]
    assert torch.equal(broken["f"][:, 0], broken["index"].double().float())
    assert broken["skipped"] == [("video3.mp4", "broken")]


def test_more_processes_than_gpus_is_an_error_that_says_what_to_do(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        ValueError, match=r"LOCAL_RANK=1, but this machine shows 1 CUDA device\(s\).*--nproc_per_node 1"
    ):
        D.init_distributed("auto")
    assert not D.is_distributed()
