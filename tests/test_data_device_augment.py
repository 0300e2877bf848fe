"""Augmentation on the training device (``data.augment=device``), run here on CPU tensors with the same code:
the CPU path's shapes and dtypes, one set of random parameters per clip shared by its frames, the flip shared
by the two views, the sampled frame's slot, padding of frames of different sizes, seeded reproducibility,
cheap repeated sampling, and a pretraining run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, TINY_RUN, make_synth
from test_data_decode import write_index_video
from test_data_sampling import _cfg, _frame_numbers

from crossvideomae.cli import main
from crossvideomae.config import load_config
from crossvideomae.data import build_pretrain_dataset, pretrain_collate
from crossvideomae.data.device_augment import DeviceAugment, collate_frames, pad_frames

T, F, S = 4, 2, 32
OFF = ["aug.randaugment=''", "aug.color_jitter=0", "aug.random_erasing=0"]  # geometry only


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synth(tmp_path_factory, num_train=8, num_val=4, num_frames=12)


def _aug_cfg(*extra):
    return load_config(None, [*TINY, "data.augment=device", f"data.num_sampled_frames={F}", *extra])


def _item(frames: torch.Tensor, rows1, rows2, image_rows, seed: int = 0) -> dict:
    """A device-augmentation item by hand: ``frames`` (U, 3, H, W) uint8, rows (r, T) / (r, F)."""
    r = len(rows1)
    return {
        "frames": frames,
        "extra": [],
        "rows1": np.array(rows1),
        "rows2": np.array(rows2),
        "image_rows": np.array(image_rows),
        "frame_index1": torch.zeros(r, F, dtype=torch.long),
        "frame_index2": torch.zeros(r, F, dtype=torch.long),
        "temporal_fallback": torch.zeros(r, dtype=torch.bool),
        "label": torch.zeros(r, dtype=torch.long),
        "kind": torch.zeros(r, dtype=torch.long),
        "index": torch.zeros(r, dtype=torch.long),
        "seed": seed,
        "skipped": [],
    }


def _static_batch(sizes=((40, 56), (48, 36), (32, 32)), clips: int = 6) -> dict:
    """Items of different frame sizes whose clips repeat one random frame T times: any op drawn per frame
    instead of per clip would make the output frames of a clip differ."""
    g = torch.Generator().manual_seed(0)
    items = []
    for k, (h, w) in enumerate(sizes):
        frames = torch.randint(0, 256, (2, 3, h, w), dtype=torch.uint8, generator=g)
        rows = [[c % 2] * T for c in range(clips)]
        items.append(_item(frames, rows, rows, [[c % 2] * F for c in range(clips)], seed=k))
    return collate_frames(items)


def test_outputs_have_the_cpu_paths_shapes_and_dtypes(synth):
    lists = [f"data.train_list={synth / 'train.txt'}", "aug.temporal_downsample=1"]
    for r in (1, 2):
        cpu = build_pretrain_dataset(load_config(None, [*TINY, *lists, f"data.repeated_sampling={r}"]))
        dev = build_pretrain_dataset(
            _aug_cfg(*lists, f"data.repeated_sampling={r}", "data.num_sampled_frames=1")
        )
        want = pretrain_collate([cpu[i] for i in range(3)])
        got = DeviceAugment(dev.cfg)(pretrain_collate([dev[i] for i in range(3)]))
        for key in (
            "video1",
            "video2",
            "images",
            "frame_index1",
            "frame_index2",
            "label",
            "temporal_fallback",
        ):
            assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype, key
        assert "frames" not in got and "plan" not in got
        for key in ("video1", "video2", "images"):  # normalised the same way: similar statistics
            assert abs(float(got[key].mean() - want[key].mean())) < 0.3
            assert 0.5 < float(got[key].std() / want[key].std()) < 2


def test_every_op_draws_once_per_clip_and_frames_of_any_size_work():
    cfg = _aug_cfg("data.flip=true", "aug.random_erasing=1", "aug.color_jitter=0.4", "aug.hue=0.1")
    out = DeviceAugment(cfg)(_static_batch())
    for key in ("video1", "video2"):
        v = out[key]  # (B, 3, T, S, S)
        assert v.shape == (18, 3, T, S, S)
        assert torch.equal(v, v[:, :, :1].expand_as(v)), key  # crop, flip, RandAugment, jitter, erasing
    v2 = out["video2"]
    assert (v2 == 0).all(dim=(1, 2)).any(), "random_erasing=1 erases a box"
    assert len({tuple(v2[c, 0, 0, 0, :4].tolist()) for c in range(18)}) > 9  # clips get their own draws


def test_views_share_the_flip():
    g = torch.Generator().manual_seed(1)
    ramp = torch.arange(S, dtype=torch.uint8).mul(7).expand(3, S, S)  # left-right asymmetric
    frames = (ramp + torch.randint(0, 20, (T, 3, S, S), dtype=torch.uint8, generator=g)).contiguous()
    rows = [list(range(T))] * 16
    batch = collate_frames([_item(frames, rows, rows, [[0, 1]] * 16)])
    cfg = _aug_cfg("data.flip=true", "data.crop_scale=[1.0,1.0]", "data.image_crop_scale=[1.0,1.0]", *OFF)
    out = DeviceAugment(cfg)(batch)
    v1, v2 = out["video1"], out["video2"]
    assert torch.allclose(v1, v2, atol=1e-5)  # the same frames, full crop: only a flip could differ
    flipped = [bool(v1[c, 0].mean((0, 1))[0] > v1[c, 0].mean((0, 1))[-1]) for c in range(16)]  # ramp reversed
    assert any(flipped) and not all(flipped)


def test_sampled_frames_keep_their_slots_through_the_dataset(tmp_path):
    write_index_video(tmp_path / "v.mp4", 30, preset="ultrafast")
    (tmp_path / "list.txt").write_text("v.mp4 0\nv.mp4 1\n")
    cfg = _cfg(tmp_path, "aug.temporal_downsample=1.0", "data.num_sampled_frames=2", "data.augment=device")
    ds = build_pretrain_dataset(cfg)
    augment = DeviceAugment(cfg)
    for epoch in range(6):
        ds.set_epoch(epoch)
        batch = augment(pretrain_collate([ds[0], ds[1]]))
        for c in range(2):
            v1 = _frame_numbers(batch["video1"][c].permute(1, 0, 2, 3))
            v2 = _frame_numbers(batch["video2"][c].permute(1, 0, 2, 3))
            imgs = _frame_numbers(batch["images"][c])
            f1, f2 = batch["frame_index1"][c].tolist(), batch["frame_index2"][c].tolist()
            assert np.all(np.diff(v1) == 2) or v1[-1] == 29
            assert [v1[p] for p in f1] == imgs  # the image branch shows the frames at frame_index1
            assert v2[f2[0]] == imgs[0]  # ... and view 2 has the first one at frame_index2


def test_repeated_clips_share_one_decoded_window(tmp_path):
    write_index_video(tmp_path / "v.mp4", 60, preset="ultrafast")
    (tmp_path / "list.txt").write_text("v.mp4 0\n")
    one = build_pretrain_dataset(_cfg(tmp_path, "data.augment=device", "aug.temporal_downsample=0"))
    four = build_pretrain_dataset(
        _cfg(tmp_path, "data.augment=device", "aug.temporal_downsample=0", "data.repeated_sampling=4")
    )
    one.set_epoch(0)
    four.set_epoch(0)
    a, b = one[0], four[0]
    assert b["frames"].shape == a["frames"].shape == (T, 3, S, S)  # r = 4 decodes no more frames
    assert b["rows1"].shape == (4, T) and (b["rows1"] == b["rows1"][0]).all()
    batch = DeviceAugment(four.cfg)(pretrain_collate([b]))
    assert batch["video1"].shape == (4, 3, T, S, S)


def test_seeded_and_leaves_the_training_rng_alone():
    cfg = _aug_cfg("data.flip=true", "aug.random_erasing=0.5")
    augment = DeviceAugment(cfg)
    torch.manual_seed(5)
    a = augment(_static_batch())
    after = torch.rand(3)
    torch.manual_seed(5)
    b = augment(_static_batch())
    assert torch.equal(torch.rand(3), after)  # the training's own stream did not move
    assert all(torch.equal(a[k], b[k]) for k in ("video1", "video2", "images"))
    other = _static_batch()
    other["plan"]["seed"] += 1
    c = augment(other)
    assert not torch.equal(a["video2"], c["video2"])


def test_parameters_drawn_in_the_loader_workers_give_the_same_batch(synth, monkeypatch):
    """The DataLoader's collate (``loader_collate``) draws the step's parameters in the workers; the step then
    draws nothing and gives the batch that drawing on the call gives, bit for bit."""
    from torch.utils.data import DataLoader

    from crossvideomae.data.device_augment import loader_collate

    cfg = _aug_cfg(
        f"data.train_list={synth / 'train.txt'}", "data.flip=true", "aug.random_erasing=0.5",
        "aug.color_jitter=0.4", "aug.hue=0.1", "data.repeated_sampling=2",
    )  # fmt: skip
    ds = build_pretrain_dataset(cfg)
    ds.set_epoch(0)
    augment = DeviceAugment(cfg)
    collate = loader_collate(augment, pretrain_collate)
    assert collate == augment.collate
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate, drop_last=True)
    drawn = list(loader)
    monkeypatch.setattr(DeviceAugment, "draw", lambda *_: pytest.fail("the step drew parameters"))
    from_workers = [augment(b) for b in drawn]
    monkeypatch.undo()
    on_call = [augment(pretrain_collate([ds[i] for i in range(k, k + 3)])) for k in range(0, len(ds) - 2, 3)]
    assert len(from_workers) == len(on_call) == len(ds) // 3
    for a, b in zip(from_workers, on_call, strict=True):
        for key in ("video1", "video2", "images"):
            assert torch.equal(a[key], b[key]), key
    assert loader_collate(lambda b: b, pretrain_collate) is pretrain_collate  # CPU augmentation: as it was


def test_the_cpus_clip_by_clip_colour_is_the_batched_colour():
    """On a CPU the step runs view 2's colour ops clip by clip, with the same drawn parameters and kernels as
    the batched path: the same pixels."""
    cfg = _aug_cfg("aug.randaugment='rand-m9-n3-mstd0.5'", "aug.color_jitter=0.4", "aug.hue=0.1")
    augment = DeviceAugment(cfg)
    video = _clips(11, B=24)
    torch.manual_seed(11)
    ops = augment.draw_colour(len(video))
    per_clip = torch.cat([augment.colour(clip[None], [o]) for clip, o in zip(video, ops, strict=True)])
    assert torch.equal(augment.colour(video, ops), per_clip)
    assert not torch.equal(per_clip, video)


def test_padding_repeats_the_edges_and_crops_stay_inside_each_frame():
    small = torch.randint(0, 256, (1, 3, 20, 24), dtype=torch.uint8)
    pool = pad_frames([small, torch.zeros(1, 3, 32, 40, dtype=torch.uint8)])
    assert pool.shape == (2, 3, 32, 40)
    assert torch.equal(pool[0, :, :20, :24], small[0])
    assert torch.equal(pool[0, :, :20, 24:], small[0, :, :, -1:].expand(3, 20, 16))
    assert torch.equal(pool[0, :, 20:], pool[0, :, 19:20].expand(3, 12, 40))
    # a full-frame crop of the small frame is the same whether or not it sits in a padded pool
    cfg = _aug_cfg("data.crop_scale=[1.0,1.0]", "data.image_crop_scale=[1.0,1.0]", *OFF)
    alone = collate_frames([_item(small, [[0] * T], [[0] * T], [[0, 0]])])
    padded = collate_frames(
        [
            _item(small, [[0] * T], [[0] * T], [[0, 0]]),
            _item(pool[1:], [[0] * T], [[0] * T], [[0, 0]], seed=1),
        ]
    )
    padded["plan"]["seed"] = alone["plan"]["seed"]
    a, b = DeviceAugment(cfg)(alone), DeviceAugment(cfg)(padded)
    assert torch.allclose(a["video1"][0], b["video1"][0], atol=1e-5)


def test_pretrain_with_device_augmentation(synth, tmp_path):
    data = [f"data.train_list={synth / 'train.txt'}", f"data.val_list={synth / 'val.txt'}"]
    res = main(
        ["pretrain", "--config", "tiny", "-o", str(tmp_path), *TINY_RUN, *data, "train.epochs=1",
         "data.batch_size=4", "data.augment=device", "data.repeated_sampling=2"]
    )  # fmt: skip
    assert res["steps"] == 2 and np.isfinite(res["final_terms"]["total"])
    assert (tmp_path / "pictures" / "reconstruction-epoch0001.png").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_geometry_matches_the_cpu():
    cfg = _aug_cfg("data.flip=true", *OFF)
    batch = _static_batch()
    cpu = DeviceAugment(cfg)(batch)
    on_gpu = {**batch, "frames": batch["frames"].cuda(), "frame_index1": batch["frame_index1"].cuda()}
    gpu = DeviceAugment(cfg)(on_gpu)
    for key in ("video1", "video2", "images"):
        assert gpu[key].is_cuda
        assert torch.allclose(gpu[key].cpu(), cpu[key], atol=0.05), key  # uint8 rounding of view 2 at most


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("ops", ["geometry", "all"])
def test_on_cuda_the_augmentation_never_waits_for_the_device(ops):
    """The host never waits for the device while it queues a batch's augmentation (a pageable copy or a tensor
    made from a Python list on the device waits for the stream's queued work): crop boxes, flips, erase boxes,
    the colour ops' values, the warp matrices and the normalisation constants all go by pinned, non-blocking
    copies. Both variants failed while torchvision's affine and rotate ran per call and the normalisation
    made its constants on the device."""
    cfg = _aug_cfg("data.flip=true", *(OFF if ops == "geometry" else []))
    batch = _static_batch()
    on_gpu = {**batch, "frames": batch["frames"].cuda(), "frame_index1": batch["frame_index1"].cuda()}
    torch.cuda.set_sync_debug_mode("error")
    try:
        DeviceAugment(cfg)(on_gpu)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_bench_loader_times_each_repeat_factor(synth, tmp_path):
    res = main(
        ["bench", "-o", str(tmp_path), "--steps", "1", "--warmup", "1", "--no-baseline", "--loader",
         "--repeats", "1,2", *TINY, "data.batch_size=4", "data.num_workers=0", "data.augment=device",
         f"data.train_list={synth / 'train.txt'}"]
    )  # fmt: skip
    rows = res["real_loader_repeats"]
    assert [r["repeated_sampling"] for r in rows] == [1, 2] and res["real_loader"] == rows[0]
    assert all(
        r["ratio_to_in_memory"] > 0 and r["clips_per_s"] > 0 and r["augment"] == "device" for r in rows
    )
    assert all(r["host_take_ms"] > 0 and r["host_ahead_ms"] >= 0 for r in rows)


def test_profile_ranges_come_from_the_host_side_event():
    """On CUDA the profiler lists a record_function range twice: its host event and a device-side twin whose
    'device time' is the span of its kernels, waits included (on an H200: 16x the range's kernel time); the
    report takes the host event's figures, whichever comes last."""
    from types import SimpleNamespace

    from crossvideomae.perf.profile import marked_ranges

    cpu, cuda = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    host = SimpleNamespace(key="prepare", device_type=cpu, cpu_time_total=8e4, device_time_total=2e4)
    twin = SimpleNamespace(key="prepare", device_type=cuda, cpu_time_total=0.0, device_time_total=3e5)
    other = SimpleNamespace(key="aten::mm", device_type=cpu, cpu_time_total=1e3, device_time_total=1e3)
    for events in ([host, twin, other], [twin, host, other]):
        assert marked_ranges(events, steps=4) == {"prepare": {"host_ms": 20.0, "device_ms": 5.0}}


def test_bench_loader_profile_reports_the_batch_preparation(synth, tmp_path):
    """--profile with --loader: a profile of the loader-fed steps per r, with the host time of preparing a batch
    (its copy and augmentation) as a range of its own."""
    res = main(
        ["bench", "-o", str(tmp_path), "--steps", "1", "--warmup", "1", "--no-baseline", "--loader",
         "--profile", "2", *TINY, "data.batch_size=4", "data.num_workers=0", "data.augment=device",
         f"data.train_list={synth / 'train.txt'}"]
    )  # fmt: skip
    prepare = res["real_loader"]["profile"]["ranges"]["prepare"]
    assert prepare["host_ms"] > 0
    assert "prepare" in (tmp_path / "profile_loader_r1.txt").read_text()


@pytest.mark.parametrize("workers", [0, 2])
def test_bench_loader_is_one_iterator_across_epoch_ends(synth, monkeypatch, workers):
    """bench's real-loader steps take their batches as pretrain does: from one DataLoader iterator whose sampler
    spans the epochs, so the workers prefetch across epoch ends (a new iterator per epoch left at most one
    epoch's batches in flight: with a few dozen files and a large batch, one)."""
    from torch.utils.data import DataLoader

    from crossvideomae.perf.timing import loader_steps

    iterators, steps = [], []
    real_iter = DataLoader.__iter__
    monkeypatch.setattr(DataLoader, "__iter__", lambda self: iterators.append(1) or real_iter(self))
    cfg = load_config(
        None,
        [*TINY, "data.batch_size=4", f"data.num_workers={workers}", "data.augment=device",
         f"data.train_list={synth / 'train.txt'}"],
    ).validate()  # fmt: skip

    def step(batch, queued):
        steps.append(batch["video1"].shape)
        queued()

    res = loader_steps(cfg, step, torch.device("cpu"), 1, 5)
    assert res["videos"] == 8 and len(steps) == 6  # 6 batches of 4 from 8 videos: three epochs
    assert all(shape[0] == 4 for shape in steps)
    assert len(iterators) == 1


def test_presampled_images_travel_beside_the_frames(tmp_path):
    from PIL import Image

    write_index_video(tmp_path / "v.mp4", 30, preset="ultrafast")
    Image.fromarray(np.full((40, 24, 3), 250, np.uint8)).save(
        tmp_path / "f.png"
    )  # another size than the video
    (tmp_path / "index.csv").write_text("video,label,frame_index,timestamp,image\nv.mp4,5,17,0.68,f.png\n")
    cfg = _cfg(
        tmp_path,
        f"data.presampled={tmp_path / 'index.csv'}",
        "data.augment=device",
        "data.repeated_sampling=2",
    )
    ds = build_pretrain_dataset(cfg)
    ds.set_epoch(0)
    batch = DeviceAugment(cfg)(pretrain_collate([ds[0]]))
    assert batch["images"].shape == (2, 1, 3, S, S)
    assert _frame_numbers(batch["images"]) == [round((250 - 4) / 8)] * 2  # read from the image file
    for c in range(2):
        v1 = _frame_numbers(batch["video1"][c].permute(1, 0, 2, 3))
        assert v1[int(batch["frame_index1"][c, 0])] == 17  # the pre-sampled frame sits on its slot


def _clips(seed: int, B: int = 12, size: int = S) -> torch.Tensor:
    """B random clips (B, T, 3, S, S) uint8 whose frames differ a little (so per-frame statistics differ)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (B, 1, 3, size, size), generator=g)
    noise = torch.randint(-8, 8, (B, T, 3, size, size), generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8)


COLOUR_SPECS = [
    ("rand-m9-n2-mstd0.5", 0.4, 0.1),
    ("rand-m5-n1-mstd0.5", 0.4, 0.0),
    ("rand-m10-n3", 0.0, 0.0),
    ("", 0.4, 0.2),  # ColorJitter only, with hue
    ("", 0.0, 0.1),  # hue only
]


@pytest.mark.parametrize(("randaugment", "jitter", "hue"), COLOUR_SPECS)
def test_batched_colour_is_the_per_clip_loop(randaugment, jitter, hue):
    """``DeviceAugment.colour`` draws what ``PretrainTransforms.colour`` draws clip by clip, in the same order,
    and gives the same pixels (bit for bit), leaving the generator where the loop leaves it."""
    cfg = _aug_cfg(f"aug.randaugment='{randaugment}'", f"aug.color_jitter={jitter}", f"aug.hue={hue}")
    augment = DeviceAugment(cfg)
    for seed in range(4):
        video = _clips(seed)
        torch.manual_seed(seed)
        want = torch.stack([augment.tf.colour(clip) for clip in video])
        after = torch.rand(2)
        torch.manual_seed(seed)
        got = augment.colour(video)
        assert torch.equal(got, want), (seed, int((got.int() - want.int()).abs().max()))
        assert torch.equal(torch.rand(2), after)
    assert torch.equal(video, _clips(3)), "the input is left as it was"


def test_batched_colour_covers_every_randaugment_op_and_shares_draws_across_frames():
    cfg = _aug_cfg("aug.randaugment='rand-m9-n3-mstd0.5'", "aug.color_jitter=0.4", "aug.hue=0.1")
    augment = DeviceAugment(cfg)
    video = _clips(7, B=48)
    torch.manual_seed(7)
    drawn = []
    for _ in range(48):  # the draws of the 48 clips, in the loop's order
        drawn += augment.tf.randaug.draw(S, S)
        augment.tf.jitter.make_params([])
    assert {op for op, _ in drawn} == set(augment.tf.randaug.by_magnitude[0]._AUGMENTATION_SPACE)
    assert {m > 0 for op, m in drawn if op == "Rotate"} == {True, False}  # both signs
    torch.manual_seed(7)
    want = torch.stack([augment.tf.colour(clip) for clip in video])
    torch.manual_seed(7)
    assert torch.equal(augment.colour(video), want)
    static = video[:, :1].expand_as(video).contiguous()  # a clip of one repeated frame stays one
    torch.manual_seed(7)
    out = augment.colour(static)
    assert torch.equal(out, out[:, :1].expand_as(out))


@pytest.mark.parametrize("name", ["saturation", "hue", "contrast"])
def test_a_compiled_colour_kernel_is_within_one_grey_level_of_the_eager_one(name):
    """``colour_ops.compiled`` (``data.augment_compile`` on a GPU): the same op as one generated kernel, for any
    number of clips, at most one grey level from the eager kernel (which is torchvision's, bit for bit). Run on
    the CPU's compiler here; the GPU's by the CUDA test below."""
    from crossvideomae.data import colour_ops

    kernel = getattr(colour_ops, name)
    g = torch.Generator().manual_seed(0)
    for n in (3, 1):  # any number of clips, one alone included
        video = torch.randint(0, 256, (n, T, 3, S, S), dtype=torch.uint8, generator=g)
        f = torch.rand(n, 1, 1, 1, 1, generator=g) * (0.5 if name == "hue" else 1.6)
        f = f - 0.25 if name == "hue" else f + 0.2
        want = kernel(video, f, 1.0 - f)
        got = colour_ops.compiled(kernel)(video, f, 1.0 - f)
        assert got.dtype == torch.uint8 and got.shape == want.shape
        assert (got.int() - want.int()).abs().max() <= 1, (name, n)
        assert (got != want).float().mean() < 1e-3, (name, n)  # a rare rounding, not another op


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_compiled_colour_is_the_per_clip_loop_within_one_grey_level():
    cfg = _aug_cfg(
        "aug.randaugment='rand-m9-n3-mstd0.5'",
        "aug.color_jitter=0.4",
        "aug.hue=0.1",
        "data.augment_compile=true",
    )
    augment = DeviceAugment(cfg)
    video = _clips(7, B=48).cuda()
    torch.manual_seed(7)
    want = torch.stack([augment.tf.colour(clip) for clip in video])
    torch.manual_seed(7)
    got = augment.colour(video)
    assert (got.int() - want.int()).abs().max() <= 1
    assert (got != want).float().mean() < 1e-3


def test_the_compiled_ends_of_the_augmentation_are_the_eager_ones():
    """The element-wise ends of ``DeviceAugment.augment`` (rounding and flipping view 2, and flipping,
    normalising, erasing and transposing every output), compiled as on a GPU, give the eager outputs."""
    from crossvideomae.data.colour_ops import compiled
    from crossvideomae.data.device_augment import _finish, _to_uint8
    from crossvideomae.data.transforms import normalize_constants

    augment = DeviceAugment(_aug_cfg())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, T, 3, S, S, generator=g) * 255
    flips = augment.flip_mask(np.array([True, False, True, False]), x.device)
    erased = augment.erase_mask(
        np.array([[2, 3, 10, 7], [0, 0, 0, 0], [5, 1, 4, 30], [0, 0, 0, 0]]), x.device
    )
    scale, shift = normalize_constants((0.4, 0.5, 0.6), (0.2, 0.25, 0.3), x.device)
    assert torch.equal(compiled(_to_uint8)(x, flips), _to_uint8(x, flips))
    for args in ((flips, None, True), (None, erased, True), (flips, None, False)):
        want = _finish(x, scale, shift, *args)
        got = compiled(_finish)(x, scale, shift, *args)
        assert got.shape == want.shape and got.is_contiguous()
        assert torch.allclose(got, want, atol=1e-6, rtol=0)
    erased_out = _finish(x, scale, shift, None, erased, True)
    assert (
        erased_out[0, ..., 2:12, 3:10].eq(0).all() and erased_out[1].ne(0).all()
    )  # clip 0's box; clip 1 none


def test_every_compiled_colour_op_traces_with_the_gpus_pinned_copies(monkeypatch):
    """On a GPU, ``to_device`` copies small host tensors through pinned memory, which a compiled graph cannot
    trace (sharpness's blur weights failed that way on an H100). Here ``to_device`` takes the GPU's pinned
    branch for every op the fused path compiles: none may call it."""
    from crossvideomae.data import colour_ops

    def pinned(t, device):
        return t.pin_memory().to(device, non_blocking=True)

    monkeypatch.setattr(colour_ops, "to_device", pinned)
    augment = DeviceAugment(_aug_cfg())
    keys = [*colour_ops.RANDAUG_PER_CLIP, *[("jitter", j) for j in range(len(colour_ops.JITTER))]]
    video = _clips(0, B=2)
    f = torch.full((2, 1, 1, 1, 1), 0.7)
    fused = [k for k in keys if augment.kernel(k, fused=True) is not augment.kernel(k)]
    assert len(fused) >= 8  # brightness, colour, contrast, solarize, posterize and the four jitter ops
    for key in fused:
        out = augment.kernel(key, fused=True)(video, f, 1.0 - f)
        assert out.dtype == torch.uint8 and out.shape == video.shape, key
