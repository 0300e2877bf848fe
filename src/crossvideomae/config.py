"""Typed configuration: dataclasses, YAML presets, ``key=value`` overrides and validation.

One root :class:`Config` holds every section; each sub-command reads the sections it needs. A config is built
from the dataclass defaults, then a YAML file (a packaged preset name such as ``tiny`` or a path), then the
command-line overrides. Unknown keys and values of the wrong type are errors naming the key; ranges and
cross-field rules are checked by :meth:`Config.validate`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key."""


# ----------------------------------------------------------------------------------------------------- sections
@dataclass
class ModelConfig:
    size: str = "base"  # tiny | small | base | large | huge (ViT widths and depths)
    img_size: int = 224  # input height = width
    num_frames: int = 16  # frames per clip
    patch_size: int = 16  # spatial patch
    tubelet_size: int = 2  # frames per tubelet token
    pos_embed: str = (
        "sincos"  # sincos: fixed 1-D table (VideoMAE) | separable: learned space + time (SpatioTemporalMAE)
    )
    embed_dim: int = 384  # width of g_u / g_f and of the decoder
    decoder_depth: int = 4
    decoder_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.0  # stochastic depth of the encoders
    grad_checkpointing: bool = False  # recompute encoder blocks in backward to save memory
    # sdpa: PyTorch's fused attention (cuDNN on Hopper) | fa4: the decoder's attention through FlashAttention-4's
    # kernels (CUDA, bf16; pip install 'crossvideomae[fa4]'; ~1.6x faster there, see docs/PERFORMANCE.md)
    decoder_attention: str = "sdpa"
    # none: the contrastive terms compare pooled g_u / g_f embeddings directly (the paper) | mlp: through a
    # SimCLR-style head (Linear-GELU-Linear) per branch, so their invariances land on the head, not on g_u
    contrastive_head: str = "none"
    # Explicit overrides of the size table (0 = take from `size`).
    width: int = 0
    depth: int = 0
    heads: int = 0


@dataclass
class MaskConfig:
    video_ratio: float = 0.95  # share of hidden tubelet tokens, per view
    image_ratio: float = 0.90  # share of hidden image patches
    video_type: str = "random"  # random | tube | frame
    image_type: str = "random"  # random (the only type that makes sense for one image)


@dataclass
class LossConfig:
    tau: float = 0.1  # NT-Xent temperature
    lambda_c: float = 1.0  # weight of L_intra + L_cross
    lambda_rl: float = 1.0  # weight of the reconstruction loss
    lambda_mse: float = 1.0  # weight of the decoder-embedding MSE between views
    intra: bool = True  # L_intra on/off
    cross: bool = True  # L_cross on/off
    video_level: bool = True  # video-level contrastive terms on/off
    frame_level: bool = True  # frame-level contrastive terms on/off
    rl: bool = True  # reconstruction term on/off
    mse: bool = True  # decoder-embedding MSE on/off
    norm_pix: str = "patch"  # patch (MAE) | channel (VideoMAE per-channel) | none
    global_negatives: bool = True  # under DDP, negatives from the whole global batch


@dataclass
class DataConfig:
    # files: videos from data.train_list / data.frame_shards | synthetic: two random batches made on the device
    # and reused (bench's inputs; for timing pretrain against bench, docs/PERFORMANCE.md)
    source: str = "files"
    train_list: str = ""  # list file (`path label`), class-per-folder root, or presampled index
    val_list: str = ""
    root: str = ""  # prefix for relative paths in list files
    frame_stride: int = 4  # 4 for Kinetics, 2 for SSv2
    short_side: int = 256  # view-1 short-side scale before the crop
    crop_scale: tuple[float, float] = (0.4, 1.0)  # RandomResizedCrop area range of the video views
    image_crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range of the image input
    flip: bool = True  # horizontal flips (off for SSv2-like data: direction is the label)
    num_sampled_frames: int = 1  # n frames per clip for the image branch
    frame_strategy: str = "random"  # random | first | middle
    presampled: str = ""  # index of a pre-sampled frame dataset (crossvideomae sample-frames)
    image_source: str = ""  # optional folder of unrelated images for the image branch
    repeated_sampling: int = 1  # clips (and views) drawn per decoded video
    # cpu: loader workers decode and augment | device: workers only decode, the training step augments the
    # uint8 batch on the model's device (crossvideomae.data.device_augment; docs/DATA.md)
    augment: str = "cpu"
    frame_shards: str = ""  # a frame-shard index.csv (sample-frames --shards), read instead of train_list
    # worker: shard JPEGs decoded in the loader workers | device: handed over as bytes and decoded in batches on
    # the training device (nvjpeg on CUDA; needs data.augment=device)
    shard_decode: str = "worker"
    # none | memory: decode every video once when the dataset is built and keep its frames in RAM
    # (crossvideomae.data.cache; for sets that fit, e.g. the learning benchmark's 0.8 GB)
    cache: str = "none"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    batch_size: int = 32  # per process
    num_workers: int = 8
    backend: str = "pyav"  # pyav | torchcodec
    decode_threads: int = (
        1  # FFmpeg threads per open file (0 = one per core); workers already run in parallel
    )
    max_bad_fraction: float = 0.01  # stop when more than this share of videos failed to decode


@dataclass
class AugConfig:
    randaugment: str = "rand-m9-n2-mstd0.5"  # timm RandAugment spec for view 2 ("" = off)
    color_jitter: float = 0.4  # view-2 brightness/contrast/saturation strength (0 = off)
    hue: float = 0.0  # view-2 hue jitter, a shift of up to this share of the colour circle (0 = off, <= 0.5)
    random_erasing: float = 0.25  # view-2 erasing probability
    temporal_downsample: float = 0.5  # probability of view-2 temporal down-sampling by 2
    mixup: float = 0.0  # mixup alpha for view 2 (0 = off)
    cutmix: float = 0.0  # cutmix alpha for view 2 (0 = off)


@dataclass
class OptimConfig:
    base_lr: float = 1.5e-4  # lr for a global batch of 256; scaled linearly
    lr: float = 0.0  # absolute lr; 0 = base_lr * global_batch / 256
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 40.0
    clip_grad: float = 0.0  # max gradient norm (0 = off)
    accum_steps: int = 1  # gradient accumulation


@dataclass
class TrainConfig:
    epochs: int = 800
    steps_per_epoch: int = 0  # 0 = one pass over the dataset
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "bf16"  # bf16 (autocast on CUDA; fp32 on CPU) | fp32
    compile: bool = False  # torch.compile the training step
    compile_loss: bool = True  # with compile, on one process: loss and model as one graph (false: model only)
    cuda_graphs: bool = False  # replay the compiled step as CUDA graphs (CUDA, compile_loss, one process)
    seed: int = 0
    log_every: int = 10  # steps between metrics.jsonl lines
    ckpt_every: int = 1  # epochs between checkpoints
    ckpt_every_steps: int = 0  # also overwrite checkpoint-last.pth every N optimiser steps (0 = off)
    keep_checkpoints: int = 2  # newest epoch checkpoints kept on disk
    viz_every: int = 0  # epochs between reconstruction pictures (0 = only at the end)
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    freeze_image: bool = False  # keep the image branch fixed


@dataclass
class InitConfig:
    video: str = ""  # checkpoint for the video encoder (ours, VideoMAE, SpatioTemporalMAE, HF)
    image: str = ""  # checkpoint for the image encoder (ours, MAE, HF ViTMAE, timm)
    model: str = ""  # a full CrossVideoMAE checkpoint of ours
    allow_partial: bool = False  # accept files that fill only part of the model (the rest: random init)


@dataclass
class EvalConfig:
    checkpoint: str = ""  # encoder to evaluate (ours or any supported format); "" = random init (train.seed)
    encoder: str = "video"  # video (clips) | image (the image encoder on an ImageFolder tree in data.*_list)
    label: str = "label"  # which label to evaluate: label (motion/action) | kind (synthetic object kind)
    epochs: int = 100  # linear-probe and fine-tuning epochs
    lr: float = 0.1  # linear probe SGD lr (momentum 0.9, no weight decay)
    warmup_epochs: float = 10.0  # linear probe warm-up
    batch_size: int = 64  # linear probe batch, and the batch of feature extraction and testing
    num_clips: int = 2  # temporal clips of the multi-view test
    num_crops: int = 3  # spatial crops of the multi-view test
    ks: tuple[int, ...] = (1, 5, 10, 20)  # retrieval R@k
    split: int = 1  # UCF101 / HMDB51 split 1-3: replaces "{split}" in data.train_list / data.val_list
    # Fine-tuning recipe (paper supp. Table 3). `finetune` trains with these in place of optim.base_lr,
    # optim.betas, optim.weight_decay, optim.warmup_epochs and model.drop_path.
    ft_base_lr: float = 1.0e-3  # AdamW lr for a global batch of 256, scaled linearly
    ft_betas: tuple[float, float] = (0.9, 0.999)
    ft_weight_decay: float = 0.05
    ft_warmup_epochs: float = 5.0
    ft_layer_decay: float = 0.75  # layer-wise lr decay (BEiT / MAE)
    ft_drop_path: float = 0.1
    label_smoothing: float = 0.1
    mixup: float = 0.8  # mixup alpha (0 = off)
    cutmix: float = 1.0  # cutmix alpha (0 = off)
    randaugment: str = "rand-m9-n2-mstd0.5"  # timm RandAugment spec of fine-tuning ("" = off)
    random_erasing: float = 0.25  # probability
    repeated_aug: int = 2  # augmented clips drawn per video and step (VideoMAE's num_sample)
    dropout: float = 0.0  # before the classification head
    num_classes: int = 0  # 0 = from the data
    # Frozen-encoder protocols. kNN compares features centred by the train set's mean, then L2-normalised.
    knn_center: bool = True
    probe: str = "linear"  # linprobe: linear (BatchNorm + linear on mean-pooled features) | attentive
    # Attentive probe: a learned query cross-attends over all tokens of the frozen encoder (timm's
    # AttentionPoolLatent, as V-JEPA / VideoMAE v2 evaluate frozen encoders) + linear head; AdamW, cosine.
    attn_epochs: int = 30
    attn_lr: float = 1.0e-3
    attn_weight_decay: float = 0.05
    attn_batch_size: int = 128


@dataclass
class SynthConfig:
    num_train: int = 200
    num_val: int = 100
    num_frames: int = 32  # frames per generated video
    size: int = 64  # frame height = width
    fps: int = 16
    num_objects: int = 1  # objects per video (all move the same way)
    backgrounds: int = 0  # 0 = a new background per video; N = drawn from a pool of N shared backgrounds
    colours: int = 0  # object colours drawn from: 0 = all 8; N = the first N (1-8)
    camera_jitter: int = 0  # hand-held camera: the whole frame shifts by up to this many pixels per frame
    noise: float = 0.0  # sensor noise: std of Gaussian noise on every pixel of every frame (0-255 scale)
    seed: int = 0


@dataclass
class AdaptConfig:
    updates_per_batch: int = 20  # K gradient updates on every batch of target data
    num_batches: int = 0  # 0 = one pass over the target data


@dataclass
class DistConfig:
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    fsdp: bool = False  # fully-sharded data parallel instead of DDP


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: InitConfig = field(default_factory=InitConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def validate(self) -> Config:
        """Check ranges and cross-field rules; raise :class:`ConfigError` naming the first bad key."""
        for key, ok, why in _rules(self):
            if not ok:
                raise ConfigError(f"config key '{key}': {why} (got {_get(self, key)!r})")
        return self


# timm's RandAugment spec: rand, then -m9 (magnitude) -n2 (ops) -mstd0.5 -mmax10 -inc1 -p0.5 -t<choices>
_RANDAUG = re.compile(r"rand(-(mstd|mmax|inc|m|n|p)\d+(\.\d+)?|-t\w+)*")


def _rules(c: Config):
    # Types, tuple lengths and unknown keys are checked by OmegaConf when the config is built; str fields that
    # name files (lists, checkpoints, folders) are checked where they are opened, naming the key or the file.
    # Rules run in order and stop at the first failure, so a rule may rely on the ones above it.
    for section in dataclasses.fields(c):  # nan and inf pass most range checks below
        for f in dataclasses.fields(getattr(c, section.name)):
            v = getattr(getattr(c, section.name), f.name)
            if isinstance(v, (float, tuple)):
                finite = all(math.isfinite(x) for x in (v if isinstance(v, tuple) else (v,)))
                yield f"{section.name}.{f.name}", finite, "must be finite"
    m = c.model
    yield "model.size", m.size in VIT_SIZES, f"must be one of {sorted(VIT_SIZES)}"
    yield "model.patch_size", m.patch_size > 0, "must be positive"
    yield "model.tubelet_size", m.tubelet_size > 0, "must be positive"
    yield (
        "model.img_size",
        m.img_size > 0 and m.img_size % m.patch_size == 0,
        "must be a positive multiple of model.patch_size",
    )
    yield (
        "model.num_frames",
        m.num_frames > 0 and m.num_frames % m.tubelet_size == 0,
        "must be a positive multiple of model.tubelet_size",
    )
    yield "model.decoder_heads", m.decoder_heads >= 1, "must be >= 1"
    yield "model.mlp_ratio", m.mlp_ratio > 0, "must be positive"
    yield "model.pos_embed", m.pos_embed in ("sincos", "separable"), "must be 'sincos' or 'separable'"
    yield "model.decoder_attention", m.decoder_attention in ("sdpa", "fa4"), "must be 'sdpa' or 'fa4'"
    yield "model.contrastive_head", m.contrastive_head in ("none", "mlp"), "must be 'none' or 'mlp'"
    yield (
        "model.embed_dim",
        m.embed_dim > 0 and m.embed_dim % m.decoder_heads == 0,
        "must be a positive multiple of model.decoder_heads",
    )
    yield "model.decoder_depth", m.decoder_depth >= 1, "must be at least 1"
    yield "model.drop_path", 0.0 <= m.drop_path < 1.0, "must be in [0, 1)"
    yield (
        "model.width",
        m.width >= 0
        and (m.width == 0 or m.width % max(m.heads or VIT_SIZES.get(m.size, (0, 0, 1))[2], 1) == 0),
        "must be 0 or a multiple of the head count",
    )
    yield "model.depth", m.depth >= 0, "must be >= 0"
    yield (
        "model.heads",
        m.heads >= 0 and vit_dims(m)[0] % (m.heads or 1) == 0,
        "must be 0 or divide the encoder width",
    )
    k = c.mask
    yield "mask.video_ratio", 0.0 <= k.video_ratio < 1.0, "must be in [0, 1)"
    yield "mask.image_ratio", 0.0 <= k.image_ratio < 1.0, "must be in [0, 1)"
    yield "mask.video_type", k.video_type in ("random", "tube", "frame"), "must be random, tube or frame"
    yield "mask.image_type", k.image_type == "random", "must be 'random'"
    t_slices = m.num_frames // max(m.tubelet_size, 1)
    yield (
        "mask.video_ratio",
        k.video_type != "frame" or round(t_slices * (1 - k.video_ratio)) >= 1,
        "leaves no visible time slice with frame masking",
    )
    lo = c.loss
    yield "loss.tau", lo.tau > 0, "must be positive"
    yield "loss.norm_pix", lo.norm_pix in ("patch", "channel", "none"), "must be patch, channel or none"
    for name in ("lambda_c", "lambda_rl", "lambda_mse"):
        yield f"loss.{name}", getattr(lo, name) >= 0, "must be >= 0"
    d = c.data
    yield "data.frame_stride", d.frame_stride >= 1, "must be >= 1"
    yield "data.short_side", d.short_side >= m.img_size, "must be >= model.img_size"
    yield "data.crop_scale", 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1, "must be 0 < lo <= hi <= 1"
    yield (
        "data.image_crop_scale",
        0 < d.image_crop_scale[0] <= d.image_crop_scale[1] <= 1,
        "must be 0 < lo <= hi <= 1",
    )
    yield (
        "data.num_sampled_frames",
        1 <= d.num_sampled_frames <= m.num_frames,
        "must be in [1, model.num_frames]",
    )
    yield (
        "data.frame_strategy",
        d.frame_strategy in ("random", "first", "middle"),
        "must be random, first or middle",
    )
    yield "data.repeated_sampling", d.repeated_sampling >= 1, "must be >= 1"
    yield "data.augment", d.augment in ("cpu", "device"), "must be cpu or device"
    yield "data.source", d.source in ("files", "synthetic"), "must be files or synthetic"
    yield "data.source", d.source == "files" or d.augment == "cpu", "synthetic needs data.augment=cpu"
    yield "data.shard_decode", d.shard_decode in ("worker", "device"), "must be worker or device"
    yield "data.cache", d.cache in ("none", "memory"), "must be none or memory"
    yield (
        "data.cache",
        d.cache == "none" or d.shard_decode == "worker",
        "memory needs data.shard_decode=worker (frames are cached decoded)",
    )
    yield "data.frame_shards", not (d.frame_shards and d.presampled), "cannot go with data.presampled"
    yield (
        "data.shard_decode",
        d.shard_decode == "worker" or (d.augment == "device" and d.frame_shards and not d.image_source),
        "device needs data.augment=device and data.frame_shards, without data.image_source",
    )
    yield "data.batch_size", d.batch_size >= 1, "must be >= 1"
    yield "data.num_workers", d.num_workers >= 0, "must be >= 0"
    yield "data.backend", d.backend in ("pyav", "torchcodec"), "must be pyav or torchcodec"
    yield "data.decode_threads", d.decode_threads >= 0, "must be >= 0"
    yield "data.max_bad_fraction", 0.0 <= d.max_bad_fraction <= 1.0, "must be in [0, 1]"
    yield "data.std", all(s > 0 for s in d.std), "must be positive"
    a = c.aug
    for name in ("color_jitter", "random_erasing", "temporal_downsample"):
        yield f"aug.{name}", 0.0 <= getattr(a, name) <= 1.0, "must be in [0, 1]"
    yield "aug.hue", 0.0 <= a.hue <= 0.5, "must be in [0, 0.5]"
    yield (
        "aug.randaugment",
        not a.randaugment or bool(_RANDAUG.fullmatch(a.randaugment)),
        "must be '' or like rand-m9-n2",
    )
    yield "aug.mixup", a.mixup >= 0, "must be >= 0"
    yield "aug.cutmix", a.cutmix >= 0, "must be >= 0"
    o = c.optim
    yield "optim.base_lr", o.base_lr > 0, "must be positive"
    yield "optim.lr", o.lr >= 0, "must be >= 0"
    yield "optim.min_lr", o.min_lr >= 0, "must be >= 0"
    yield "optim.weight_decay", o.weight_decay >= 0, "must be >= 0"
    yield "optim.betas", all(0 <= b < 1 for b in o.betas), "must be in [0, 1)"
    yield "optim.warmup_epochs", o.warmup_epochs >= 0, "must be >= 0"
    yield "optim.clip_grad", o.clip_grad >= 0, "must be >= 0"
    yield "optim.accum_steps", o.accum_steps >= 1, "must be >= 1"
    tr = c.train
    yield "train.epochs", tr.epochs >= 1, "must be >= 1"
    yield "train.steps_per_epoch", tr.steps_per_epoch >= 0, "must be >= 0"
    yield (
        "train.device",
        tr.device in ("auto", "cpu", "cuda") or tr.device.startswith("cuda:"),
        "must be auto, cpu, cuda or cuda:N",
    )
    yield "train.precision", tr.precision in ("bf16", "fp32"), "must be bf16 or fp32"
    yield "train.log_every", tr.log_every >= 1, "must be >= 1"
    yield (
        "train.cuda_graphs",
        not tr.cuda_graphs or (tr.compile and tr.compile_loss),
        "needs train.compile=true and train.compile_loss=true",
    )
    yield "train.ckpt_every", tr.ckpt_every >= 1, "must be >= 1"
    yield "train.ckpt_every_steps", tr.ckpt_every_steps >= 0, "must be >= 0 (0 = off)"
    yield "train.keep_checkpoints", tr.keep_checkpoints >= 1, "must be >= 1"
    yield "train.viz_every", tr.viz_every >= 0, "must be >= 0"
    yield "train.max_bad_steps", tr.max_bad_steps >= 1, "must be >= 1"
    yield "train.seed", tr.seed >= 0, "must be >= 0"
    e = c.eval
    yield "eval.label", e.label in ("label", "kind"), "must be label or kind"
    yield "eval.epochs", e.epochs >= 1, "must be >= 1"
    yield "eval.lr", e.lr > 0, "must be positive"
    yield "eval.batch_size", e.batch_size >= 1, "must be >= 1"
    yield "eval.num_clips", e.num_clips >= 1, "must be >= 1"
    yield "eval.num_crops", e.num_crops in (1, 3), "must be 1 or 3"
    yield "eval.ks", len(e.ks) > 0 and all(k >= 1 for k in e.ks), "must be positive integers"
    yield "eval.split", e.split in (1, 2, 3), "must be 1, 2 or 3"
    yield "eval.label_smoothing", 0 <= e.label_smoothing < 1, "must be in [0, 1)"
    yield "eval.repeated_aug", e.repeated_aug >= 1, "must be >= 1"
    yield "eval.encoder", e.encoder in ("video", "image"), "must be video or image"
    yield "eval.warmup_epochs", e.warmup_epochs >= 0, "must be >= 0"
    yield "eval.ft_base_lr", e.ft_base_lr > 0, "must be positive"
    yield "eval.ft_betas", all(0 <= b < 1 for b in e.ft_betas), "must be in [0, 1)"
    yield "eval.ft_weight_decay", e.ft_weight_decay >= 0, "must be >= 0"
    yield "eval.ft_warmup_epochs", e.ft_warmup_epochs >= 0, "must be >= 0"
    yield "eval.ft_layer_decay", 0 < e.ft_layer_decay <= 1, "must be in (0, 1]"
    yield "eval.ft_drop_path", 0 <= e.ft_drop_path < 1, "must be in [0, 1)"
    yield "eval.mixup", e.mixup >= 0, "must be >= 0"
    yield "eval.cutmix", e.cutmix >= 0, "must be >= 0"
    yield "eval.random_erasing", 0 <= e.random_erasing <= 1, "must be in [0, 1]"
    yield (
        "eval.randaugment",
        not e.randaugment or bool(_RANDAUG.fullmatch(e.randaugment)),
        "must be '' or like rand-m9-n2",
    )
    yield "eval.dropout", 0 <= e.dropout < 1, "must be in [0, 1)"
    yield "eval.num_classes", e.num_classes >= 0, "must be >= 0"
    yield "eval.probe", e.probe in ("linear", "attentive"), "must be linear or attentive"
    yield "eval.attn_epochs", e.attn_epochs >= 1, "must be >= 1"
    yield "eval.attn_lr", e.attn_lr > 0, "must be positive"
    yield "eval.attn_weight_decay", e.attn_weight_decay >= 0, "must be >= 0"
    yield "eval.attn_batch_size", e.attn_batch_size >= 2, "must be >= 2"
    s = c.synth
    yield "synth.num_train", s.num_train >= 1, "must be >= 1"
    yield "synth.num_val", s.num_val >= 1, "must be >= 1"
    yield "synth.num_frames", s.num_frames >= 2, "must be >= 2"
    yield (
        "synth.size",
        s.size >= 16 and s.size % 2 == 0,
        "must be an even number >= 16 (H.264 needs even sizes)",
    )
    yield "synth.num_objects", s.num_objects >= 1, "must be >= 1"
    yield "synth.fps", s.fps >= 1, "must be >= 1"
    yield "synth.seed", s.seed >= 0, "must be >= 0"
    yield "synth.backgrounds", s.backgrounds >= 0, "must be >= 0"
    yield "synth.colours", 0 <= s.colours <= 8, "must be in [0, 8] (0 = all 8 colours)"
    yield "synth.camera_jitter", 0 <= s.camera_jitter <= s.size // 4, "must be in [0, synth.size / 4]"
    yield "synth.noise", 0 <= s.noise <= 64, "must be in [0, 64]"
    yield "adapt.updates_per_batch", c.adapt.updates_per_batch >= 1, "must be >= 1"
    yield "adapt.num_batches", c.adapt.num_batches >= 0, "must be >= 0"
    yield "dist.backend", c.dist.backend in ("auto", "nccl", "gloo"), "must be auto, nccl or gloo"


# width, depth, heads of the usual ViT sizes
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}


def vit_dims(m: ModelConfig) -> tuple[int, int, int]:
    """(width, depth, heads) of the encoders: the size table, with explicit overrides on top."""
    width, depth, heads = VIT_SIZES[m.size]
    return m.width or width, m.depth or depth, m.heads or heads


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


# ------------------------------------------------------------------------------------------------ loading
PRESETS = ("tiny", "vits_synth", "vits_study", "vitb_k400", "vitb_ssv2", "finetune_small")


def preset_path(name_or_path: str) -> Path:
    """A YAML path, or the packaged preset of that name."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    ref = resources.files("crossvideomae") / "configs" / f"{name_or_path}.yaml"
    if not ref.is_file():
        raise ConfigError(f"unknown preset '{name_or_path}'; packaged presets: {', '.join(PRESETS)}")
    return Path(str(ref))


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """Load a YAML file; a top-level ``_base_: NAME`` (or a list of names, later ones on top) inherits from other
    presets or files."""
    if path in seen:
        raise ConfigError(f"config inheritance loop through {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    base = raw.pop("_base_", None)
    node = OmegaConf.create(raw)
    bases = base if isinstance(base, list) else [] if base is None else [base]
    for name in reversed(bases):  # `_base_: [a, b]`: a, then b on top, then this file
        node = OmegaConf.merge(_load_yaml(preset_path(str(name)), seen + (path,)), node)
    return node


def load_config(config: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML (preset name or path) <- ``key=value`` overrides, type-checked and validated."""
    item = None
    try:
        node = OmegaConf.structured(Config)
        if config:
            node = OmegaConf.merge(node, _load_yaml(preset_path(config)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form key=value")
        for item in overrides:  # one at a time: some errors (a tuple of the wrong length) carry no key
            value = item + "''" if item.endswith("=") else item  # `key=`: "" (OmegaConf would read None)
            node = OmegaConf.merge(node, OmegaConf.from_dotlist([value]))
        item = None
        cfg = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or (item.split("=", 1)[0] if item else None)
        msg = str(err).splitlines()[0]
        raise ConfigError(f"config key '{key}': {msg}" if key else msg) from None
    assert isinstance(cfg, Config)
    return cfg.validate()


def to_dict(cfg: Config) -> dict[str, Any]:
    return _plain(dataclasses.asdict(cfg))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a config saved by :func:`to_dict` (e.g. from a checkpoint), with the same checks."""
    try:
        node = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(d))
        cfg = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    assert isinstance(cfg, Config)
    return cfg.validate()


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
