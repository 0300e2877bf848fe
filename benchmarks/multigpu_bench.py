"""Data-parallel pretraining steps: per-GPU throughput and the first-step loss of a fixed global batch.

    python benchmarks/multigpu_bench.py OUT_DIR [key=value ...]                              # one GPU
    torchrun --standalone --nproc_per_node N benchmarks/multigpu_bench.py OUT_DIR [key=value ...]

Throughput: the training step of ``crossvideomae pretrain`` (``engine.step.build_step``, as ``fit`` builds it:
DDP, or FSDP2 with ``dist.fsdp=true``; bf16 autocast, the CrossVideoMAE loss with global negatives, backward,
gradient norm, fused AdamW) on random in-memory tensors, ``data.batch_size`` clips per GPU; median ms/step of
each rank after warm-up steps.

Loss check: one fixed global batch of ``GLOBAL_BATCH`` clips (default 64) with fixed per-sample masks, split
evenly over the ranks; the loss terms of the global batch (mean over ranks) and the gradient norm after
gradient averaging, in fp32 (TF32 off) and under bf16 autocast. A one-GPU run with the same global batch must
give the same figures. Writes OUT_DIR/multigpu.json (rank 0).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from crossvideomae.config import load_config
from crossvideomae.engine import distributed as D
from crossvideomae.engine.optim import scaled_lr
from crossvideomae.engine.step import TrainStep, build_step
from crossvideomae.losses import CrossVideoMAELoss
from crossvideomae.models import build_model
from crossvideomae.perf import measure
from crossvideomae.tasks.pretrain import build_pretraining, pretrain_loss, random_batch

# The setting of docs/PERFORMANCE.md: ViT-B/16, 16x224x224, video and image masks 0.9, 32 clips per GPU.
BASE = ["mask.video_ratio=0.9", "mask.image_ratio=0.9", "data.batch_size=32", "train.device=cuda"]


def throughput(cfg, device: torch.device, warmup: int = 5, steps: int = 20) -> dict:
    torch.manual_seed(0)
    model, criterion = build_pretraining(cfg)
    step = build_step(cfg, model.train(), pretrain_loss(criterion), device, scaled_lr(cfg.optim, 256))

    torch.manual_seed(1 + D.rank())
    batches = [random_batch(cfg, device), random_batch(cfg, device)]
    fig = measure(step, batches, warmup, steps, device)
    ms_all = [fig["ms_per_step"]]
    if D.is_distributed():
        ms_all = [None] * D.world_size()
        torch.distributed.all_gather_object(ms_all, fig["ms_per_step"])
    B = cfg.data.batch_size
    return {
        **fig,
        "ms_per_step_ranks": ms_all,
        "clips_per_s_per_gpu": B / (max(ms_all) * 1e-3),
        "clips_per_s_total": B * D.world_size() / (max(ms_all) * 1e-3),
    }


def loss_check(cfg, device: torch.device, global_batch: int) -> dict:
    """Loss terms and gradient norm of one fixed global batch, split over the ranks."""
    m, F = cfg.model, cfg.data.num_sampled_frames
    G, r, w = global_batch, D.rank(), D.world_size()
    b = G // w
    g = torch.Generator().manual_seed(7)
    clip = (G, 3, m.num_frames, m.img_size, m.img_size)
    batch = {
        "video1": torch.randn(clip, generator=g),
        "video2": torch.randn(clip, generator=g),
        "images": torch.randn(G, F, 3, m.img_size, m.img_size, generator=g),
        "frame_index1": torch.randint(0, m.num_frames, (G, F), generator=g),
        "frame_index2": torch.randint(0, m.num_frames, (G, F), generator=g),
    }
    torch.manual_seed(0)
    model = build_model(cfg)
    torch.manual_seed(8)
    ids_v, ids_i = model.mask_video(2 * G, "cpu"), model.mask_image(G * F, "cpu")
    mine = slice(r * b, (r + 1) * b)
    local = {k: v[mine].to(device) for k, v in batch.items()}
    local_v = torch.cat([ids_v[:G][mine], ids_v[G:][mine]]).to(device)  # view 1 of my clips, then view 2
    local_i = ids_i[r * b * F : (r + 1) * b * F].to(device)
    model.mask_video = lambda n, dev: local_v
    model.mask_image = lambda n, dev: local_i
    net, _ = D.wrap_model(model.to(device).train(), device, cfg.dist.fsdp)
    loss_fn, unused = pretrain_loss(CrossVideoMAELoss(cfg.loss)), torch.optim.SGD(model.parameters(), lr=0.0)
    out = {}
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    for precision in ("fp32", "bf16"):
        step = TrainStep(net, loss_fn, unused, device, precision=precision, raw_model=model)
        terms = step.backward(local)
        norm = step.grad_norm(torch.zeros((), device=device))
        out[precision] = {
            **D.mean_over_ranks({k: v.detach() for k, v in terms.items()}),
            "grad_norm": float(norm),
        }
        model.zero_grad(set_to_none=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return out


def main(argv: list[str]) -> None:
    out_dir = Path(argv[0])
    cfg = load_config("vitb_k400", [*BASE, *argv[1:]])
    device = D.init_distributed(cfg.dist.backend) or torch.device(cfg.train.device)
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "world_size": D.world_size(),
        "fsdp": cfg.dist.fsdp,
        "batch_per_gpu": cfg.data.batch_size,
        "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"),
        "throughput": throughput(cfg, device),
    }
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the throughput model is gone
    G = int(os.environ.get("GLOBAL_BATCH", "64"))
    if G:
        results["global_batch"] = G
        results["loss_check"] = loss_check(cfg, device, G)
    if D.is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "multigpu.json").write_text(json.dumps(results, indent=2))
        t = results["throughput"]
        print(
            f"{results['device']} x{results['world_size']} fsdp={cfg.dist.fsdp}: "
            f"{t['ms_per_step']:.1f} ms/step (ranks {[round(x, 1) for x in t['ms_per_step_ranks']]}), "
            f"{t['clips_per_s_per_gpu']:.1f} clips/s per GPU, peak {t['peak_mem_gib']:.1f} GiB"
        )
        for precision, terms in results.get("loss_check", {}).items():
            print(f"  first-step {precision}: " + " ".join(f"{k}={v:.6f}" for k, v in terms.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
