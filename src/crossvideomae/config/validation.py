"""Ranges and cross-field rules of a :class:`Config`: :func:`check` raises :class:`ConfigError` naming the first
bad key. Types, tuple lengths and unknown keys are checked by OmegaConf when the config is built."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from .sections import VIT_SIZES, Config, ConfigError, vit_dims


def check(cfg: Config) -> None:
    for key, ok, why in _rules(cfg):
        if not ok:
            raise ConfigError(f"config key '{key}': {why} (got {_get(cfg, key)!r})")


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
    for name in ("color_jitter", "random_erasing", "temporal_downsample", "background_merge"):
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
    yield "eval.ft_pool", e.ft_pool in ("mean", "attentive"), "must be mean or attentive"
    yield (
        "eval.ft_head_init",
        not e.ft_head_init or e.ft_pool == "attentive",
        "initialises the attentive pooling and head: needs eval.ft_pool=attentive",
    )
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


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg
