"""The experiments' pretraining steps against the package's fastest step, in one process on one GPU.

    python experiments/step_variants.py OUT_DIR VARIANT [VARIANT ...]

Variants: cudagraphs (the package's step: model + loss compiled as one graph, replayed as Inductor's CUDA graphs;
the reference), compile_fused / cudagraphs_fused (compile_loss / cudagraphs with every MLP switched to
``fused_mlp.FusedMlp``: GELU fused into Triton matrix products), graph_whole / graph_image / graph_overlap /
graph_views (``overlap_step.whole_graph_step``: forward, backward and AdamW as one hand-captured CUDA graph;
image: the image branch on a second stream; overlap: the image branch, the targets and the image branch's
AdamW on a second stream; views: and the two views' video branches on two streams), graph_stagesN (graph_overlap
with the video encoder compiled as N regions whose AdamW starts on the second stream when their backward is
done). A ``_fa4`` suffix adds ``model.decoder_attention=fa4``. Setting: ViT-B/16, 16x224x224, batch 32, video
and image mask 0.9. Each variant profiles 3 steps (OUT_DIR/profile_VARIANT.txt; NO_PROFILE=1 skips it); writes
OUT_DIR/matrix.json after every variant.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch
from fused_mlp import use_fused_mlp
from overlap_step import SIDE_WORK, whole_graph_step

from crossvideomae import perf
from crossvideomae.config import load_config
from crossvideomae.tasks.pretrain import pretrain_step, random_batch

BASE = ["mask.video_ratio=0.9", "mask.image_ratio=0.9", "data.batch_size=32", "train.device=cuda"]
SIDE = {"graph_whole": (), "graph_image": ("image",), "graph_overlap": ("image", "targets", "optimizer")}


def build(name: str, device: torch.device):
    """(step, model, cfg) of one variant."""
    base = name.removesuffix("_fa4")
    fa4 = ["model.decoder_attention=fa4"] if name.endswith("_fa4") else []
    cfg = load_config("vitb_k400", [*BASE, "train.compile=true", *fa4])
    if base.startswith("graph_"):
        stages = int(base.removeprefix("graph_stages")) if base.startswith("graph_stages") else 1
        side = SIDE["graph_overlap"] if stages > 1 else SIDE.get(base, SIDE_WORK)  # graph_views: all
        step, model = whole_graph_step(cfg, device, side, stages=stages)
        return step, model, cfg
    cfg.train.cuda_graphs = base != "compile_fused"
    step = pretrain_step(cfg.validate(), device)
    model = step.raw_model
    if base.endswith("_fused"):  # before the first call, where compiling happens
        use_fused_mlp(model)
    elif base != "cudagraphs":
        raise ValueError(f"unknown variant {name!r}")
    return step, model, cfg


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "variants": {}}
    res["ceiling_tflops"] = perf.matmul_ceiling(device)
    for name in sys.argv[2:]:
        t0 = time.time()
        torch.compiler.reset()
        torch.cuda.empty_cache()
        try:
            step, model, cfg = build(name, device)
            batches = [random_batch(cfg, device)]
            r = perf.measure(step, batches, 3, 15, device)
            r = perf.summarise(r, perf.pretrain_flops(cfg), cfg.data.batch_size, res["ceiling_tflops"])
            probes = [next(model.video_encoder.parameters()), next(model.image_encoder.parameters())]
            before = [p.detach().clone() for p in probes]
            r["loss"] = float(step(batches[0]))  # a replay trains: the loss is finite, both branches move
            r["weights_moved"] = all(bool((p != b).any()) for p, b in zip(probes, before, strict=True))
            if not os.environ.get("NO_PROFILE"):
                profile = out_dir / f"profile_{name}.txt"
                r.update(perf.profile_steps(step, batches[0], 3, device, profile, top=25))
            r["seconds"] = time.time() - t0
            res["variants"][name] = r
            del step, model, batches
        except Exception as err:  # keep the other variants' numbers
            traceback.print_exc()
            res["variants"][name] = {"error": repr(err)[:400]}
        (out_dir / "matrix.json").write_text(json.dumps(res, indent=2, default=str))
    print(f"\n{res['device']}  torch {res['torch']}  ceiling {res['ceiling_tflops']:.0f} TFLOP/s")
    for name, r in res["variants"].items():
        line = f"{r['ms_per_step']:8.2f} ms {r['mfu']:6.1%}" if "ms_per_step" in r else r["error"]
        print(f"{name:<22} {line}")


if __name__ == "__main__":
    main()
