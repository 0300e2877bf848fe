"""Measuring training steps: timing, profiling, model FLOPs and the Hugging Face baseline.

``crossvideomae bench`` (tasks/bench.py) is a command over this library; the scripts in ``benchmarks/`` import
it too. The step they time is the one ``pretrain`` trains with (``engine.step``).
"""

from .baseline import videomae_step
from .flops import grids, pretrain_flops, videomae_flops
from .profile import host_syncs, profile_steps
from .timing import (
    Batch,
    Step,
    loader_steps,
    matmul_ceiling,
    measure,
    peak_memory_gib,
    summarise,
    sync,
    time_calls,
)

__all__ = [
    "Batch",
    "Step",
    "grids",
    "host_syncs",
    "loader_steps",
    "matmul_ceiling",
    "measure",
    "peak_memory_gib",
    "pretrain_flops",
    "profile_steps",
    "summarise",
    "sync",
    "time_calls",
    "videomae_flops",
    "videomae_step",
]
