"""Reading weights in any supported layout: a checkpoint file, our export, a Hugging Face / timm folder or a run
folder (its newest checkpoint), into our key layout (:mod:`.formats`), with the model config that builds a
module fitting them: exact for ours and Hugging Face, inferred from tensor shapes otherwise.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import VIT_SIZES, ModelConfig
from ..engine.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from .formats import Converted, detect_format, to_ours, unwrap

# Our exports: ``NAME.safetensors`` with this metadata ``format`` and ``NAME.json`` ({"model": ModelConfig}) beside.
EXPORT_FORMATS = {
    "crossvideomae.video_encoder": "video_encoder.",
    "crossvideomae.image_encoder": "image_encoder.",
    "crossvideomae.model": "",
}
_HF_WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


@dataclass
class Source:
    """A checkpoint read into our key layout."""

    path: Path
    format: str  # a key of formats.FORMATS
    container: str | None  # the dict key the weights sat under
    converted: Converted
    config: ModelConfig | None  # exact for ours and Hugging Face, inferred from shapes otherwise


def read_source(path: str | Path) -> Source:
    """Read a checkpoint file, an export, a Hugging Face / timm folder or a run folder (newest checkpoint)."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return _read_hf_folder(path)
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(
                f"{path}: a folder without config.json (Hugging Face / timm) or checkpoints"
            )
        path = newest
    obj = load_checkpoint(path)
    export = _export_format(path)
    if export is not None:
        prefix = EXPORT_FORMATS[export]
        state = {prefix + k: v for k, v in obj.items()}
        return Source(path, "ours", None, to_ours(state, "ours"), _export_config(path))
    try:
        sd, container = unwrap(obj)
        fmt = detect_format(sd)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    converted = to_ours(sd, fmt)
    config = None
    if fmt == "ours" and isinstance(obj.get("config"), dict):
        config = _model_config_from_dict(obj["config"].get("model", {}), path)
    return Source(path, fmt, container, converted, config or _infer_model_config(converted.state, fmt))


def _export_format(path: Path) -> str | None:
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        fmt = (f.metadata() or {}).get("format")
    return fmt if fmt in EXPORT_FORMATS else None


def _export_config(path: Path) -> ModelConfig | None:
    beside = path.with_suffix(".json")
    if not beside.is_file():
        return None
    return _model_config_from_dict(json.loads(beside.read_text()).get("model", {}), beside)


def _model_config_from_dict(d: dict[str, Any], where: Path) -> ModelConfig:
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), d))
    except OmegaConfBaseException as err:
        raise CheckpointError(
            f"{where}: model config does not fit this version ({str(err).splitlines()[0]})"
        ) from None


def _read_hf_folder(path: Path) -> Source:
    hf = json.loads((path / "config.json").read_text())
    weights = next((path / n for n in _HF_WEIGHTS if (path / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path}: no {' / '.join(_HF_WEIGHTS[:2])} beside config.json")
    if weights.name.endswith(".index.json"):
        shards = sorted(set(json.loads(weights.read_text())["weight_map"].values()))
        sd = {k: v for s in shards for k, v in load_checkpoint(path / s).items()}
    else:
        sd = load_checkpoint(weights)
    try:
        sd, container = unwrap(sd)
        fmt = detect_format(sd, hf.get("model_type"))
    except ValueError as err:
        raise CheckpointError(f"{weights}: {err}") from None
    converted = to_ours(sd, fmt)
    config = _hf_model_config(hf) if fmt.startswith("hf_") else _infer_model_config(converted.state, fmt)
    if fmt == "hf_videomae" and "video_encoder.norm.weight" not in converted.state:
        converted.notes.append(
            "this Hugging Face VideoMAE (use_mean_pooling=True) has no final LayerNorm: ours keeps its initial one"
        )
    return Source(weights, fmt, container, converted, config)


def _sized(width: int, depth: int, heads: int, **fields: Any) -> ModelConfig:
    """A ModelConfig naming the matching ViT size, or the explicit width / depth / heads."""
    for name, dims in VIT_SIZES.items():
        if dims == (width, depth, heads):
            return ModelConfig(size=name, **fields)
    return ModelConfig(size="base", width=width, depth=depth, heads=heads, **fields)


def _heads(width: int) -> int:
    """Head counts are not stored in weights: the standard ViT's for its width, else 64-channel heads."""
    return next((h for w, _, h in VIT_SIZES.values() if w == width), max(1, width // 64))


def _hf_model_config(c: dict[str, Any]) -> ModelConfig:
    first = lambda v: v[0] if isinstance(v, (list, tuple)) else v  # noqa: E731
    width = c.get("hidden_size", 768)
    fields: dict[str, Any] = dict(
        img_size=first(c.get("image_size", 224)),
        patch_size=first(c.get("patch_size", 16)),
        mlp_ratio=c.get("intermediate_size", 4 * width) / width,
        qkv_bias=bool(c.get("qv_bias", c.get("qkv_bias", True))),
    )
    if c.get("model_type") == "videomae":
        fields.update(
            num_frames=c.get("num_frames", 16),
            tubelet_size=c.get("tubelet_size", 2),
            embed_dim=c.get("decoder_hidden_size", 384),
            decoder_depth=c.get("decoder_num_hidden_layers", 4),
            decoder_heads=c.get("decoder_num_attention_heads", 6),
        )
    return _sized(width, c.get("num_hidden_layers", 12), c.get("num_attention_heads", 12), **fields)


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    idx = [int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}(\d+)\.", k))]
    return 1 + max(idx) if idx else 0


def _infer_model_config(state: dict[str, torch.Tensor], fmt: str) -> ModelConfig | None:
    """Architecture from tensor shapes, for files that do not carry their config. Unknowable fields (image size
    and frame count when no learned position table is stored) keep the ModelConfig defaults."""
    enc = next(
        (e for e in ("video_encoder", "image_encoder") if f"{e}.patch_embed.proj.weight" in state), None
    )
    if enc is None:
        return None
    w = state[f"{enc}.patch_embed.proj.weight"]
    width, patch = w.shape[0], w.shape[-1]
    fields: dict[str, Any] = dict(patch_size=patch, qkv_bias=f"{enc}.blocks.0.attn.qkv.bias" in state)
    fc1 = state.get(f"{enc}.blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        fields["mlp_ratio"] = fc1.shape[0] / width
    tubelet = w.shape[2] if w.ndim == 5 else ModelConfig.tubelet_size
    fields["tubelet_size"] = tubelet
    spatial, temporal = (
        state.get("video_encoder.pos_embed_spatial"),
        state.get("video_encoder.pos_embed_temporal"),
    )
    if enc == "video_encoder" and spatial is not None and temporal is not None:
        fields.update(
            pos_embed="separable",
            img_size=math.isqrt(spatial.shape[1]) * patch,
            num_frames=temporal.shape[1] * tubelet,
        )
    table = state.get("image_encoder.pos_embed")
    if (
        enc == "image_encoder"
        and table is not None
        and math.isqrt(table.shape[1] - 1) ** 2 == table.shape[1] - 1
    ):
        fields["img_size"] = math.isqrt(table.shape[1] - 1) * patch
    proj = state.get("video_proj.weight")
    if proj is not None:
        dim = proj.shape[0]
        # SpatioTemporalMAE's decoders use 16 heads at every size; VideoMAE's use 64-channel heads.
        heads = 16 if fmt == "mae_st" else max(1, dim // 64)
        fields.update(
            embed_dim=dim, decoder_depth=max(1, _count(state, "decoder.blocks.")), decoder_heads=heads
        )
    return _sized(width, _count(state, f"{enc}.blocks."), _heads(width), **fields)


def model_config_from_checkpoint(path: str | Path) -> ModelConfig | None:
    """The model section that builds an encoder fitting ``path``: exact for our checkpoints, exports and Hugging
    Face folders; inferred from tensor shapes for official files (head counts of the standard ViT sizes).
    None when the file holds no encoder we know."""
    return read_source(path).config
