"""Exports: our safetensors file with its model config beside it, and a Hugging Face VideoMAE folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..config import ModelConfig
from ..engine.checkpoint import CheckpointError
from ..files import atomic_write
from ..models import CrossVideoMAE, ImageEncoder, VideoEncoder
from .formats import to_hf_videomae


def save_weights(module: nn.Module, path: str | Path, model_cfg: ModelConfig) -> Path:
    """Our export: ``path`` (.safetensors) plus ``path.json`` holding the model config that builds ``module``.

    module: a VideoEncoder, ImageEncoder or CrossVideoMAE; :func:`load_pretrained` and
    :func:`model_config_from_checkpoint` read the pair back.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: an export is a .safetensors file")
    fmt = {VideoEncoder: "crossvideomae.video_encoder", ImageEncoder: "crossvideomae.image_encoder"}.get(
        type(module), "crossvideomae.model"
    )
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda f: f.write(save(state, metadata={"format": fmt})))
    meta = {"format": fmt, "model": dataclasses.asdict(model_cfg)}
    atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return path


def hf_videomae_config(m: ModelConfig, architecture: str) -> dict[str, Any]:
    """A ``transformers.VideoMAEConfig`` (as JSON) whose model computes what ours does: LayerNorm eps 1e-6 and
    ``use_mean_pooling=False``, so ``VideoMAEModel`` ends with our per-token final norm (its
    ``last_hidden_state`` is our ``forward_features``; its mean over tokens is our ``forward``)."""
    from ..config import vit_dims

    width, depth, heads = vit_dims(m)
    return {
        "architectures": [architecture],
        "model_type": "videomae",
        "image_size": m.img_size,
        "patch_size": m.patch_size,
        "num_channels": 3,
        "num_frames": m.num_frames,
        "tubelet_size": m.tubelet_size,
        "hidden_size": width,
        "num_hidden_layers": depth,
        "num_attention_heads": heads,
        "intermediate_size": int(width * m.mlp_ratio),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-6,
        "qkv_bias": m.qkv_bias,  # transformers < 5
        "qv_bias": m.qkv_bias,  # transformers >= 5
        "use_mean_pooling": False,
        "decoder_hidden_size": m.embed_dim,
        "decoder_num_hidden_layers": m.decoder_depth,
        "decoder_num_attention_heads": m.decoder_heads,
        "decoder_intermediate_size": int(m.embed_dim * m.mlp_ratio),
        "norm_pix_loss": True,
        "torch_dtype": "float32",
    }


def export_hf_videomae(
    module: VideoEncoder | CrossVideoMAE, model_cfg: ModelConfig, out_dir: str | Path
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` that ``transformers.VideoMAEModel.from_pretrained(out_dir)``
    loads: a VideoEncoder as ``VideoMAEModel``; a CrossVideoMAE as ``VideoMAEForPreTraining`` (encoder, g_u as
    ``encoder_to_decoder``, decoder). Needs the fixed sin-cos tables (``model.pos_embed=sincos``): Hugging Face
    VideoMAE has no learned position embeddings."""
    from safetensors.torch import save

    if model_cfg.pos_embed != "sincos":
        raise CheckpointError(
            "Hugging Face VideoMAE has only the fixed sin-cos table; this model uses model.pos_embed="
            f"{model_cfg.pos_embed}"
        )
    out_dir = Path(out_dir)
    if isinstance(module, VideoEncoder):
        state = {f"video_encoder.{k}": v for k, v in module.state_dict().items()}
        arch, prefix = "VideoMAEModel", ""
    elif isinstance(module, CrossVideoMAE):
        state = {
            k: v
            for k, v in module.state_dict().items()
            if k.startswith(("video_encoder.", "video_proj.", "decoder."))
        }
        arch, prefix = "VideoMAEForPreTraining", "videomae."
    else:
        raise TypeError(f"expected a VideoEncoder or CrossVideoMAE, got {type(module).__name__}")
    hf = {k: v.detach().cpu() for k, v in to_hf_videomae(state, prefix).items()}
    atomic_write(out_dir / "model.safetensors", lambda f: f.write(save(hf, metadata={"format": "pt"})))
    config = json.dumps(hf_videomae_config(model_cfg, arch), indent=2)
    atomic_write(out_dir / "config.json", lambda f: f.write(config.encode()))
    return out_dir
