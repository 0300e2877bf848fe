"""Several pretraining-step variants in one process on one GPU, against one ceiling and one baseline.

    python benchmarks/step_matrix.py OUT_DIR VARIANT [VARIANT ...]

Variants: hf (the baseline), eager, compile (the model only), compile_loss (model + loss as one graph),
cdt (compile_loss with Inductor's coordinate-descent tuning of its Triton kernels), autotune (compile_loss with
Inductor's max-autotune GEMMs: Triton templates that can fuse bias / GELU epilogues, cuBLAS kept as a candidate), cudagraphs (compile_loss
replayed as CUDA graphs), cudagraphs_aggr / cudagraphs_pointwise / cudagraphs_combo / cudagraphs_pdl / cudagraphs_nomix /
cudagraphs_mixsplit (and Inductor's aggressive fusion / tuned pointwise and reduction kernels / combo kernels /
programmatic dependent launch / no mix-order reductions / autotuned mix-order split size), cudagraphs_fa4 (with
model.decoder_attention=fa4: the decoder's attention through FlashAttention-4's kernels, crossvideomae.fa4; needs
the flash-attn-4 package), cudagraphs_explicit_attn (and plain-product attention in the
encoders, whose sequences are short), ckpt (eager + activation checkpointing), large / large_compile /
large_cudagraphs / large_ckpt (ViT-L, batch 16), sdpa (attention backends on the step's shapes). The compiled
variants profile 3 steps (OUT_DIR/profile_VARIANT.txt; kernel groups and top kernels in the JSON; NO_PROFILE=1 skips it); with
LOADER_LIST set, compile_loss also runs fed by the real loader (WORKERS processes, default 15). Writes OUT_DIR/matrix.json after every variant and prints a table at the end.
Setting: ViT-B/16, 16x224x224, batch 32, video and image mask 0.9.
The experiments' step variants (fused MLP, one hand-captured graph) are in experiments/step_variants.py.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
from torch._inductor import config as inductor_config

from crossvideomae import perf
from crossvideomae.config import load_config
from crossvideomae.tasks.pretrain import pretrain_step, random_batch

# Inductor settings of the variants that differ from compile_loss / cudagraphs only in how Inductor compiles:
# cdt tunes its Triton kernels' block shapes by coordinate descent; autotune benchmarks Triton GEMM templates
# (which can fuse epilogues) against cuBLAS; *_aggr fuses kernels that share no loop structure; *_pointwise
# benchmarks several block sizes for every Triton pointwise / reduction kernel; *_combo launches independent
# small kernels as one; *_pdl lets each kernel start while the previous one drains (programmatic dependent launch, Hopper);
# *_nomix computes LayerNorm weight / bias gradients in reductions of their own instead of Inductor's mix-order
# reductions (which finish with an ATen sum over a workspace), *_mixsplit autotunes those reductions' split size.
FA4 = ("model.decoder_attention=fa4",)  # the *_fa4 variants
INDUCTOR_FLAGS: dict[str, dict] = {
    "cdt": {"coordinate_descent_tuning": True},
    "autotune": {"max_autotune_gemm": True, "max_autotune_gemm_backends": "TRITON,ATEN"},
    "cudagraphs_aggr": {"aggressive_fusion": True},
    "cudagraphs_pointwise": {"max_autotune_pointwise": True},
    "cudagraphs_combo": {"combo_kernels": True},
    "cudagraphs_pdl": {"triton.enable_pdl": True},
    "cudagraphs_nomix": {"triton.mix_order_reduction": False},
    "cudagraphs_mixsplit": {"triton.mix_order_reduction_autotune_split_size": True},
}
BASE = ["mask.video_ratio=0.9", "mask.image_ratio=0.9", "data.batch_size=32", "train.device=cuda"]


def sdpa_backends(device: torch.device) -> dict:
    """fwd+bwd ms of each SDPA backend on the step's attention shapes (bf16)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    shapes = {
        "decoder 64x6x1568x64": (64, 6, 1568, 64),
        "encoder 64x12x157x64": (64, 12, 157, 64),
        "image 32x12x21x64": (32, 12, 21, 64),
    }
    out = {}

    def explicit(q, k, v):  # timm's non-fused path under autocast: bf16 products, fp32 softmax
        return (((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).float().softmax(-1).to(v.dtype)) @ v

    compiled = torch.compile(explicit)
    for name, shape in shapes.items():
        q, k, v = (
            torch.randn(shape, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
        )
        g = torch.randn(shape, device=device, dtype=torch.bfloat16)

        def fb_explicit(q=q, k=k, v=v, g=g):
            compiled(q, k, v).backward(g)

        for _ in range(3):
            fb_explicit()
        out[f"{name} explicit-compiled"] = statistics.median(perf.time_calls(fb_explicit, 20))
        for backend in (
            SDPBackend.CUDNN_ATTENTION,
            SDPBackend.FLASH_ATTENTION,
            SDPBackend.EFFICIENT_ATTENTION,
        ):
            try:
                with sdpa_kernel([backend]):

                    def fb(q=q, k=k, v=v, g=g):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v).backward(g)

                    for _ in range(3):
                        fb()
                    ms = statistics.median(perf.time_calls(fb, 20))
                out[f"{name} {backend.name}"] = ms
            except RuntimeError as err:
                out[f"{name} {backend.name}"] = str(err).splitlines()[0][:100]
    return out


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    variants = sys.argv[2:]
    device = torch.device("cuda")
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "variants": {}}
    res["ceiling_tflops"] = perf.matmul_ceiling(device)
    path = out_dir / "matrix.json"

    def save():
        path.write_text(json.dumps(res, indent=2, default=str))

    def cfg_for(*extra):
        return load_config("vitb_k400", BASE + list(extra))

    save()
    for name in variants:
        t0 = time.time()
        torch.compiler.reset()
        torch.cuda.empty_cache()
        try:
            flags = INDUCTOR_FLAGS.get(name, {})
            if name == "sdpa":
                res["sdpa"] = sdpa_backends(device)
                save()
                continue
            if name == "hf":
                cfg = cfg_for()
                step, make = perf.videomae_step(cfg, device)
                r = perf.measure(step, [make(), make()], 3, 15, device)
                r = perf.summarise(r, perf.videomae_flops(cfg), 32, res["ceiling_tflops"])
            else:
                extra = {
                    "eager": [],
                    "ckpt": ["model.grad_checkpointing=true"],
                    "compile": ["train.compile=true"],
                    "compile_loss": ["train.compile=true"],
                    "cudagraphs": ["train.compile=true"],
                    "cudagraphs_explicit_attn": ["train.compile=true"],
                    "cudagraphs_fa4": ["train.compile=true", *FA4],
                    "large": ["model.size=large", "data.batch_size=16"],
                    "large_compile": ["model.size=large", "data.batch_size=16", "train.compile=true"],
                    "large_ckpt": ["model.size=large", "data.batch_size=16", "model.grad_checkpointing=true"],
                    "large_cudagraphs": ["model.size=large", "data.batch_size=16", "train.compile=true"],
                    **{v: ["train.compile=true"] for v in INDUCTOR_FLAGS},  # compile_loss, compiled otherwise
                }[name]
                cfg = cfg_for(*extra)
                graphs = name.startswith("cudagraphs") or name == "large_cudagraphs"
                cfg.train.compile_loss = cfg.train.compile and name != "compile"
                cfg.train.cuda_graphs = graphs
                step = pretrain_step(cfg.validate(), device)
                model = step.raw_model
                if (
                    name == "cudagraphs_explicit_attn"
                ):  # short sequences: do plain products beat fused kernels?
                    for blk in [*model.video_encoder.blocks, *model.image_encoder.blocks]:
                        blk.attn.fused_attn = False
                batches = [random_batch(cfg, device)]
                warm = 3 if cfg.train.compile else 2
                with inductor_config.patch(flags):  # compiling happens in the first (warm-up) calls
                    r = perf.measure(step, batches, warm, 15, device)
                r = perf.summarise(r, perf.pretrain_flops(cfg), cfg.data.batch_size, res["ceiling_tflops"])
                syncs = perf.host_syncs(step, batches[0], device)
                r["host_syncs_per_step"], r["host_sync_messages"] = len(syncs), syncs[:3]
                if not os.environ.get("NO_PROFILE") and name in (
                    "compile_loss",
                    "cudagraphs",
                    "cudagraphs_fa4",
                    "cudagraphs_explicit_attn",
                    *INDUCTOR_FLAGS,
                ):
                    r.update(
                        perf.profile_steps(
                            step, batches[0], 3, device, out_dir / f"profile_{name}.txt", top=25
                        )
                    )
                if name == "compile_loss" and os.environ.get("LOADER_LIST"):
                    cfg.data.train_list, cfg.data.num_workers = (
                        os.environ["LOADER_LIST"],
                        int(os.environ.get("WORKERS", 15)),
                    )
                    real = perf.loader_steps(cfg, step, device, warmup=3, steps=15)
                    r["real_loader"] = {**real, "ratio_to_in_memory": r["ms_per_step"] / real["ms_per_step"]}
                del step, batches, model
            r["seconds"] = time.time() - t0
            res["variants"][name] = r
        except Exception as err:  # keep the other variants' numbers
            traceback.print_exc()
            res["variants"][name] = {"error": repr(err)[:400]}
        save()
        print(
            f"[{name}] {json.dumps(res['variants'].get(name, res.get('sdpa')), default=str)[:600]}",
            flush=True,
        )

    print(f"\n{res['device']}  torch {res['torch']}  ceiling {res['ceiling_tflops']:.0f} TFLOP/s")
    print(f"{'variant':<14} {'ms/step':>8} {'clips/s':>8} {'TFLOP/s':>8} {'MFU':>6} {'GiB':>6}")
    for name, r in res["variants"].items():
        if "ms_per_step" in r:
            print(
                f"{name:<14} {r['ms_per_step']:8.1f} {r['clips_per_s']:8.1f} {r['tflops']:8.1f} {r['mfu']:6.1%} {r['peak_mem_gib']:6.1f}"
            )
        else:
            print(f"{name:<14} {r}")
    for k, v in res.get("sdpa", {}).items():
        print(f"  sdpa {k}: {v}")


if __name__ == "__main__":
    main()
