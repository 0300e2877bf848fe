"""An experiment (not part of the package): the whole pretraining step captured as one CUDA graph, with
independent work on a second stream.

The compiled step replayed as Inductor's CUDA graphs (``benchmarks/step_matrix.py`` variant ``cudagraphs``) is three
pieces with host work between them (forward graph, backward graph, fused AdamW launches) on one stream. Here
forward, backward and AdamW are one hand-captured graph (PyTorch's "whole-network capture"), and ``side``
names the work that runs on a second stream, as parallel paths of that graph the GPU can overlap with the
video branch's large matrix products:

- ``image``: the image branch (f_f, g_f on 32 x 21-token sequences: hundreds of small kernels), forward and
  therefore backward;
- ``targets``: the norm-pix reconstruction targets (a memory-bound pass over both views' pixels);
- ``optimizer``: AdamW of the image branch's parameters, right after its backward (the video branch's backward
  still runs). Two AdamW instances over a partition of the parameters give the same update as one (AdamW is
  per parameter); only without gradient clipping, which needs every gradient first;
- ``stages`` (a number, not side work): the video encoder's blocks compiled as that many regions (graph breaks
  between them), so that each region's backward is an autograd node of its own whose parameter gradients are
  complete when it ends; the AdamW of every region but the first (the last region with the encoder's norm,
  g_u and the decoder) then runs on the side stream while the earlier regions' backward still runs, instead of
  after the whole backward. Needs ``optimizer``. Measured: slower than one region (docs/PERFORMANCE-LOG.md, "Run 8").
- ``views``: the video branch as two calls of B clips (one per view, each with its own masks) on two streams
  instead of one call of 2B clips, so that one view's memory-bound kernels (GELU, LayerNorm, residual adds)
  can run beside the other view's matrix products; their weight gradients add up in autograd.

The branches, the targets and the loss are compiled as separate regions (``CrossVideoMAE.forward_video``,
``forward_images``, ``targets``), since Inductor emits one stream per graph. Same mathematics as the package's
step; ``python experiments/step_variants.py OUT graph_whole graph_image graph_overlap cudagraphs`` times them in
one process. Measured (docs/PERFORMANCE-LOG.md, "Run 7"): image + targets + optimizer 0.8–1.0 ms faster than
Inductor's CUDA graphs of the same step, nearly all of it from the image branch; ``views`` slower.
"""

from __future__ import annotations

import contextlib
import itertools

import torch
import torch.nn as nn

from crossvideomae import perf
from crossvideomae.config import Config
from crossvideomae.engine.optim import build_adamw, param_groups, scaled_lr
from crossvideomae.losses import CrossVideoMAELoss
from crossvideomae.models import build_model
from crossvideomae.models.crossvideomae import Outputs

SIDE_WORK = ("image", "targets", "optimizer", "views")


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, clip: float) -> None:
    """Clip (if set), AdamW, free the gradients: no host synchronisation (inside a captured graph)."""
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _adamw(model: nn.Module, cfg: Config, device: torch.device, keep) -> torch.optim.AdamW | None:
    """AdamW over the parameters ``keep`` accepts (None if none), with the engine's groups and lr; capturable
    on CUDA (step counters on the GPU: AdamW inside the graph)."""
    groups = [
        {**g, "params": [p for p in g["params"] if keep(p)]}
        for g in param_groups(model, cfg.optim.weight_decay)
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        return None
    opt = build_adamw(groups, scaled_lr(cfg.optim, cfg.data.batch_size), cfg.optim, device)
    for g in opt.param_groups:
        g["capturable"] = device.type == "cuda"
    return opt


def _stage_regions(model: nn.Module, stages: int) -> list[set[nn.Parameter]]:
    """Split the video encoder's blocks into ``stages`` compiled regions (a graph break after the last block of
    every region but the last) and return the parameters of regions 1..stages-1, the last one with everything
    its region computes after the blocks (the encoder's norm, g_u, the decoder)."""
    blocks = model.video_encoder.blocks
    if not 1 <= stages <= len(blocks):
        raise ValueError(f"stages={stages}: between 1 and the encoder's depth {len(blocks)}")
    cuts = [round(len(blocks) * i / stages) for i in range(stages + 1)]
    for i in cuts[1:-1]:
        blk = blocks[i - 1]

        def forward(*args, _forward=blk.forward, **kwargs):
            out = _forward(*args, **kwargs)
            torch._dynamo.graph_break()  # the next region starts here
            return out

        blk.forward = forward
    regions = [{p for blk in blocks[a:b] for p in blk.parameters()} for a, b in itertools.pairwise(cuts[1:])]
    if regions:
        tail = (model.video_encoder.norm, model.video_proj, model.decoder)
        regions[-1] |= {p for m in tail for p in m.parameters()}
    return regions


def _when_accumulated(params: set[nn.Parameter], fn) -> None:
    """Call ``fn`` each backward, once every parameter of ``params`` has its gradient accumulated."""
    pending = set()

    def hook(p: nn.Parameter) -> None:
        if not pending:
            pending.update(map(id, params))
        pending.discard(id(p))
        if not pending:
            fn()

    for p in params:
        p.register_post_accumulate_grad_hook(hook)


def _step_on(opt: torch.optim.Optimizer, stream, device: torch.device) -> None:
    """AdamW on ``stream`` after the work queued so far on the current stream (which produced the gradients)."""
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        opt.step()


def whole_graph_step(
    cfg: Config,
    device: torch.device,
    side: tuple[str, ...] = (),
    warmup: int = 3,
    compile: bool = True,
    stages: int = 1,
) -> tuple[perf.Step, nn.Module]:
    """The training step of ``tasks.pretrain.pretrain_step`` as one hand-captured CUDA graph (captured at the first call,
    after ``warmup`` runs that compile and autotune); ``side`` (a subset of :data:`SIDE_WORK`) runs on second
    streams. The first batch's tensors become the graph's inputs; later batches are copied into them. On a CPU
    the same step runs without streams or graph (the tests compare it with the package's step there)."""
    unknown = set(side) - set(SIDE_WORK)
    if unknown or ("optimizer" in side and "image" not in side):
        raise ValueError(f"side work {side}: choose from {SIDE_WORK}; 'optimizer' needs 'image'")
    if "optimizer" in side and cfg.optim.clip_grad > 0:
        raise ValueError("the image branch's AdamW cannot run early with gradient clipping (optim.clip_grad)")
    if stages > 1 and "optimizer" not in side:
        raise ValueError("stages > 1 updates parameters early: it needs 'optimizer' side work")
    model = build_model(cfg).to(device).train()
    criterion = CrossVideoMAELoss(cfg.loss)
    early = (
        {*model.image_encoder.parameters(), *model.image_proj.parameters()} if "optimizer" in side else set()
    )
    opt_image = _adamw(model, cfg, device, lambda p: p in early)
    staged = _stage_regions(model, stages)  # parameter sets whose AdamW starts after their region's backward
    opt_stages = [_adamw(model, cfg, device, lambda p, r=region: p in r) for region in staged]
    in_stages = set().union(*staged)
    opt_rest = _adamw(model, cfg, device, lambda p: p not in early and p not in in_stages)
    bf16 = device.type == "cuda" and cfg.train.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    compiled = torch.compile if compile else (lambda fn: fn)

    def untargeted(out: Outputs) -> dict:  # without the targets: Inductor drops their computation
        return {k: x for k, x in vars(out).items() if k not in ("target", "h_f")}

    def loss(video1, video2, target, h_f):  # video2 None: video1 holds both views
        video = video1 if video2 is None else {k: torch.cat([video1[k], video2[k]]) for k in video1}
        return criterion(Outputs(**video, target=target, h_f=h_f))["total"]

    views_fn = compiled(lambda v1, v2, f1, f2: untargeted(model.forward_video(v1, v2, f1, f2)))
    clips_fn = compiled(lambda videos, frame_index: untargeted(model.forward_clips(videos, frame_index)))
    image_fn = compiled(model.forward_images)
    target_fn = compiled(lambda v1, v2: model.targets(torch.cat([v1, v2])))
    loss_fn = compiled(loss)
    cuda = device.type == "cuda"
    stream, view_stream = (torch.cuda.Stream(device), torch.cuda.Stream(device)) if cuda else (None, None)

    def on(s, work: str = ""):  # run on stream `s` (if `work` is side work); a no-op context on a CPU
        return torch.cuda.stream(s) if cuda and (not work or work in side) else contextlib.nullcontext()

    def wait(a, b) -> None:  # stream a waits for the work queued on b
        if cuda:
            a.wait_stream(b)

    def train_step(b: perf.Batch) -> torch.Tensor:
        main = torch.cuda.current_stream(device) if cuda else None
        wait(stream, main)  # fork
        wait(view_stream, main)
        with autocast:
            with on(stream, "image"):
                h_f = image_fn(b["images"])
            with on(stream, "targets"), torch.no_grad():
                target = target_fn(b["video1"], b["video2"])
            if "views" in side:
                with on(view_stream):
                    video2 = clips_fn(b["video2"], b["frame_index2"])
                video1 = clips_fn(b["video1"], b["frame_index1"])
            else:
                video1 = views_fn(b["video1"], b["video2"], b["frame_index1"], b["frame_index2"])
                video2 = None
            wait(main, stream)  # join before the loss
            wait(main, view_stream)
            total = loss_fn(video1, video2, target, h_f)
        videos = [video1] if video2 is None else [video1, video2]
        if "optimizer" in side:  # the image branch's backward and AdamW on the side stream, started first
            outs = [h_f, *(x for v in videos for x in v.values() if x.requires_grad)]
            grads = torch.autograd.grad(total, outs)
            wait(stream, main)
            with on(stream):
                h_f.backward(grads[0])
                _optimizer_step(model.image_encoder, opt_image, 0.0)
            torch.autograd.backward(outs[1:], grads[1:])
        else:
            total.backward()
        _optimizer_step(model, opt_rest, cfg.optim.clip_grad)
        wait(main, stream)  # join: the graph ends on the capture stream
        wait(main, view_stream)
        for opt in opt_stages:  # freed only after the join: the side stream's AdamW read these gradients
            opt.zero_grad(set_to_none=True)
        return total.detach()

    for region, opt in zip(
        staged, opt_stages, strict=True
    ):  # launch a region's AdamW once its grads are all in
        _when_accumulated(region, lambda opt=opt: _step_on(opt, stream, device) if cuda else opt.step())

    if not cuda:
        return train_step, model
    state: dict = {}

    def step(batch: perf.Batch) -> torch.Tensor:
        if not state:
            static = dict(batch)
            warm = torch.cuda.Stream(device)  # warm-up off the default stream, as capture requires
            warm.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(warm):
                for _ in range(warmup):
                    train_step(static)
            torch.cuda.current_stream(device).wait_stream(warm)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                loss = train_step(static)
            state.update(static=static, graph=graph, loss=loss)
        for k, v in batch.items():
            if v is not state["static"][k]:
                state["static"][k].copy_(v, non_blocking=True)
        state["graph"].replay()
        return state["loss"]

    return step, model
