"""One pre-norm MLP sub-block, ``x + mlp(norm(x))``, forward + backward on the pretraining step's shapes:
timm's ``Mlp`` against the experimental ``FusedMlp`` (experiments/fused_mlp.py), eager and compiled, bf16 autocast, in one process.

    python experiments/mlp_bench.py OUT_DIR [autotune]

``autotune`` adds timm's Mlp compiled with Inductor's max-autotune GEMMs (Triton templates with persistent TMA
kernels, which can fuse the GELU epilogue, benchmarked against cuBLAS); it compiles for minutes.
Writes OUT_DIR/mlp_bench.json (ms per call, median of 30, and the kernel groups and top kernels of the compiled
variants, from ``bench.profile_steps``; their kernel tables in OUT_DIR/profile_*.txt).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from fused_mlp import FusedMlp, _gemm_gelu_tuned  # next to this script
from timm.layers import Mlp

from crossvideomae.layers import LayerNorm
from crossvideomae.tasks import bench

# (clips x tokens, width): the decoder over all 1568 tokens of 64 views, the encoder over 157 visible ones
SHAPES = {"decoder 64x1568x384": (64, 1568, 384), "encoder 64x157x768": (64, 157, 768)}


class PreNormMlp(nn.Module):
    def __init__(self, width: int, mlp: type[nn.Module]):
        super().__init__()
        self.norm = LayerNorm(width)
        self.mlp = mlp(width, 4 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    variants = ["timm eager", "fused eager", "timm compiled", "fused compiled"]
    if "autotune" in sys.argv[2:]:
        variants.append("timm max-autotune")
    for shape_name, (b, n, width) in SHAPES.items():
        torch.manual_seed(0)
        x = torch.randn(b, n, width, device=device, requires_grad=True)
        dy = torch.randn(b, n, width, device=device)
        ref = PreNormMlp(width, Mlp).to(device)
        out: dict = {}
        for name in variants:
            torch.compiler.reset()
            module = PreNormMlp(width, FusedMlp if name.startswith("fused") else Mlp).to(device)
            module.load_state_dict(ref.state_dict())
            if name.endswith("compiled"):
                fn = torch.compile(module)
            elif name == "timm max-autotune":
                fn = torch.compile(
                    module,
                    options={
                        "max_autotune": True,
                        "max_autotune_gemm_backends": "TRITON,ATEN",
                        "triton.enable_persistent_tma_matmul": True,
                    },
                )
            else:
                fn = module

            def call(fn=fn, module=module, x=x, dy=dy):
                module.zero_grad(set_to_none=True)
                x.grad = None
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    y = fn(x)
                y.backward(dy)

            t0 = time.time()
            try:
                for _ in range(3):
                    call()
                ms = statistics.median(bench.time_calls(call, 30))
                call()
                grads = [x.grad.clone(), *(p.grad.clone() for p in module.parameters())]
                entry = {"ms": ms, "warmup_s": time.time() - t0}
                if name == "timm eager":
                    base_grads = grads
                else:  # agreement with timm eager (both bf16): relative max difference per gradient
                    entry["max_rel_diff_vs_timm_eager"] = max(
                        ((g.float() - r.float()).abs().max() / r.float().abs().max()).item()
                        for g, r in zip(grads, base_grads, strict=True)
                    )
                if name.endswith("compiled") or name == "timm max-autotune":
                    tag = f"{shape_name.split()[0]}_{name.replace(' ', '_')}"
                    entry.update(
                        bench.profile_steps(
                            lambda _batch, call=call: call(),
                            {},
                            3,
                            device,
                            out_dir / f"profile_{tag}.txt",
                            top=8,
                        )
                    )
            except Exception as err:  # keep the other variants' numbers
                entry = {"error": repr(err)[:400]}
            out[name] = entry
            print(f"[{shape_name}] {name}: {json.dumps(entry)[:700]}", flush=True)
        res["shapes"][shape_name] = out
        res["fused_kernel_configs"] = {str(k): str(v) for k, v in _gemm_gelu_tuned.cache.items()}
        (out_dir / "mlp_bench.json").write_text(json.dumps(res, indent=2))
    print(f"\n{res['device']}  torch {res['torch']}")
    for shape_name, out in res["shapes"].items():
        for name, entry in out.items():
            print(f"{shape_name:<22} {name:<18} {entry.get('ms', float('nan')):8.3f} ms")


if __name__ == "__main__":
    main()
