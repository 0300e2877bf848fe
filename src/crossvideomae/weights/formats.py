"""State-dict layouts of MAE, VideoMAE, SpatioTemporalMAE, Hugging Face and timm, mapped onto ours.

Each layout is a list of renaming rules from its keys to our CrossVideoMAE keys (``video_encoder.*``,
``image_encoder.*``, ``video_proj.*``, ``decoder.*``). Attention projections stored as separate q / k / v
(SpatioTemporalMAE, Hugging Face) or as VideoMAE's bias-free ``qkv`` plus ``q_bias`` / ``v_bias`` are then fused
into our ``attn.qkv`` (a missing k bias is zero: adding the same number to every attention logit of a query
changes nothing). Everything here works on plain dicts of tensors; reading files is :mod:`.read`'s job, fitting
position tables and loading modules :mod:`.load`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

FORMATS: dict[str, str] = {
    "ours": "CrossVideoMAE (this package)",
    "mae": "MAE / timm ViT (image)",
    "videomae": "VideoMAE (official)",
    "mae_st": "SpatioTemporalMAE (official)",
    "hf_videomae": "Hugging Face VideoMAE",
    "hf_vitmae": "Hugging Face ViTMAE",
}

# Wrappers that training scripts put around a state dict, in the order they are tried.
CONTAINERS = ("model", "module", "model_state", "state_dict")
# Prefixes left by DDP, torch.compile and VideoMAE's fine-tuning wrapper.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")

_VIDEO_ENC = (
    r"patch_embed\.proj\.\w+|pos_embed|pos_embed_spatial|pos_embed_temporal|blocks\..+|norm\.\w+|fc_norm\.\w+"
)

# (regex on a source key, replacement). A replacement of None marks a known key that has no place in our model
# (a classifier, a cls token, MAE's image decoder); such keys are reported as skipped, not as unexpected.
RULES: dict[str, list[tuple[str, str | None]]] = {
    "ours": [(r"^((?:video_encoder|image_encoder|video_proj|image_proj|decoder)\..+)$", r"\1")],
    "mae": [
        (
            r"^(patch_embed\.proj\.\w+|cls_token|pos_embed|blocks\..+|norm\.\w+|fc_norm\.\w+)$",
            r"image_encoder.\1",
        ),
        (r"^(mask_token|decoder_.+|head\.\w+)$", None),
    ],
    "videomae": [
        (rf"^encoder\.({_VIDEO_ENC})$", r"video_encoder.\1"),
        (rf"^({_VIDEO_ENC})$", r"video_encoder.\1"),
        (r"^encoder_to_decoder\.weight$", "video_proj.weight"),
        (r"^mask_token$", "decoder.mask_token"),
        (r"^decoder\.(blocks\..+|norm\.\w+|head\.\w+)$", r"decoder.\1"),
        (r"^(?:encoder\.)?head\.\w+$", None),
    ],
    "mae_st": [
        (rf"^({_VIDEO_ENC})$", r"video_encoder.\1"),
        (r"^decoder_embed\.weight$", "video_proj.weight"),
        (r"^mask_token$", "decoder.mask_token"),
        (r"^decoder_(pos_embed|pos_embed_spatial|pos_embed_temporal)$", r"decoder.decoder_\1"),
        (r"^decoder_blocks\.(.+)$", r"decoder.blocks.\1"),
        (r"^decoder_norm\.(\w+)$", r"decoder.norm.\1"),
        (r"^decoder_pred\.(\w+)$", r"decoder.head.\1"),
        (
            r"^(cls_token|pos_embed_class|decoder_cls_token|decoder_pos_embed_class|decoder_embed\.bias|head\.\w+)$",
            None,
        ),
    ],
    "hf_videomae": [
        (
            r"^(?:videomae\.)?embeddings\.patch_embeddings\.projection\.(\w+)$",
            r"video_encoder.patch_embed.proj.\1",
        ),
        (r"^(?:videomae\.)?encoder\.layer\.(.+)$", r"video_encoder.blocks.\1"),
        (r"^(?:videomae\.)?layernorm\.(\w+)$", r"video_encoder.norm.\1"),
        (r"^fc_norm\.(\w+)$", r"video_encoder.fc_norm.\1"),
        (r"^encoder_to_decoder\.weight$", "video_proj.weight"),
        (r"^mask_token$", "decoder.mask_token"),
        (r"^decoder\.decoder_layers\.(.+)$", r"decoder.blocks.\1"),
        (r"^decoder\.(norm|head)\.(\w+)$", r"decoder.\1.\2"),
        (r"^classifier\.\w+$", None),
    ],
    "hf_vitmae": [
        (r"^(?:vit\.)?embeddings\.cls_token$", "image_encoder.cls_token"),
        (r"^(?:vit\.)?embeddings\.position_embeddings$", "image_encoder.pos_embed"),
        (
            r"^(?:vit\.)?embeddings\.patch_embeddings\.projection\.(\w+)$",
            r"image_encoder.patch_embed.proj.\1",
        ),
        (r"^(?:vit\.)?(?:encoder\.layer|layers)\.(.+)$", r"image_encoder.blocks.\1"),
        (r"^(?:vit\.)?layernorm\.(\w+)$", r"image_encoder.norm.\1"),
        (r"^decoder\..+$", None),
    ],
}

# Inside a Hugging Face layer: transformers < 5 names (hub files) and transformers >= 5 names.
_HF_BLOCK: list[tuple[str, str]] = [
    (r"^layernorm_before\.", "norm1."),
    (r"^layernorm_after\.", "norm2."),
    (r"^attention\.attention\.query\.", "attn.q."),
    (r"^attention\.attention\.key\.", "attn.k."),
    (r"^attention\.attention\.value\.", "attn.v."),
    (r"^attention\.attention\.([qv])_bias$", r"attn.\1_bias"),
    (r"^attention\.([qkv])_proj\.", r"attn.\1."),
    (r"^attention\.output\.dense\.", "attn.proj."),
    (r"^attention\.o_proj\.", "attn.proj."),
    (r"^intermediate\.dense\.", "mlp.fc1."),
    (r"^output\.dense\.", "mlp.fc2."),
]
_HF_BLOCK_KEY = re.compile(r"^(.*\.blocks\.\d+\.)(.+)$")


@dataclass
class Converted:
    """A source state dict in our key layout."""

    state: dict[str, torch.Tensor]
    skipped: list[str] = field(default_factory=list)  # known source keys without a counterpart in ours
    unexpected: list[str] = field(default_factory=list)  # source keys no rule knows
    notes: list[str] = field(default_factory=list)  # what the conversion changed


def unwrap(obj: object) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a checkpoint container and the container key (None for a bare state dict).

    Wrapper prefixes (``module.``, ``_orig_mod.``, ``backbone.``) are removed.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict of tensors, found {type(obj).__name__}")
    container = next((k for k in CONTAINERS if isinstance(obj.get(k), dict)), None)
    sd = obj[container] if container else obj
    tensors = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        for p in _WRAPPER_PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
        tensors[k] = v
    if not tensors:
        raise ValueError(f"no tensors found (top-level keys: {sorted(obj)[:12]})")
    return tensors, container


def detect_format(sd: dict[str, torch.Tensor], hf_model_type: str | None = None) -> str:
    """Which layout ``sd`` (unwrapped) is in; ``hf_model_type`` is ``config.json``'s ``model_type`` if any."""
    if hf_model_type == "videomae":
        return "hf_videomae"
    if hf_model_type == "vit_mae":
        return "hf_vitmae"
    keys = list(sd)
    if any(k.startswith(("video_encoder.", "image_encoder.")) for k in keys):
        return "ours"
    proj = next((v for k, v in sd.items() if k.endswith("patch_embeddings.projection.weight")), None)
    if proj is not None:
        return "hf_videomae" if proj.ndim == 5 else "hf_vitmae"
    if any(k.endswith(".attn.q.weight") for k in keys):
        return "mae_st"
    patch = sd.get("encoder.patch_embed.proj.weight", sd.get("patch_embed.proj.weight"))
    if patch is not None:
        return "videomae" if patch.ndim == 5 else "mae"
    raise ValueError("unrecognised layout: no patch embedding among the keys " + ", ".join(keys[:8]))


def to_ours(sd: dict[str, torch.Tensor], fmt: str) -> Converted:
    """Rename ``sd`` from layout ``fmt`` into ours and fuse attention projections."""
    out = Converted({})
    rules = [(re.compile(pat), rep) for pat, rep in RULES[fmt]]
    for key, value in sd.items():
        for pat, rep in rules:
            if pat.match(key):
                if rep is None:
                    out.skipped.append(key)
                else:
                    out.state[pat.sub(rep, key)] = value
                break
        else:
            out.unexpected.append(key)
    if fmt.startswith("hf_"):
        out.state = {_hf_block_key(k): v for k, v in out.state.items()}
    fused = _fuse_attention(out.state)
    if fused and fmt != "ours":
        out.notes.append(f"q / k / v projections of {fused} attention layers fused into qkv")
    # A fine-tuned model's norm after mean pooling (fc_norm) stands in for the per-token norm it replaced.
    for enc in ("video_encoder", "image_encoder"):
        if f"{enc}.fc_norm.weight" in out.state:
            fc = {
                k: out.state.pop(f"{enc}.fc_norm.{k}")
                for k in ("weight", "bias")
                if f"{enc}.fc_norm.{k}" in out.state
            }
            if f"{enc}.norm.weight" in out.state:
                out.skipped += [f"fc_norm.{k}" for k in fc]
            else:
                out.state.update({f"{enc}.norm.{k}": v for k, v in fc.items()})
                out.notes.append(
                    f"{enc}: the checkpoint's fc_norm (applied after mean pooling) is loaded as our per-token final norm; "
                    "pooled features differ from the fine-tuned model's"
                )
    if fmt == "mae_st" and "cls_token" in sd:
        out.notes.append(
            "SpatioTemporalMAE cls token dropped: our video encoder has none, so its token features differ slightly "
            "from the original, which attended to the cls token"
        )
    if fmt == "mae_st" and "decoder_embed.bias" in sd:
        out.notes.append("decoder_embed.bias dropped: our g_u (video_proj) has no bias")
    return out


def _hf_block_key(key: str) -> str:
    m = _HF_BLOCK_KEY.match(key)
    if not m:
        return key
    for pat, rep in _HF_BLOCK:
        if re.match(pat, m.group(2)):
            return m.group(1) + re.sub(pat, rep, m.group(2))
    return key


def _fuse_attention(state: dict[str, torch.Tensor]) -> int:
    """Merge ``attn.{q,k,v}.*`` and ``attn.{q,v}_bias`` into ``attn.qkv.*`` in place; returns the layer count."""
    done: set[str] = set()
    for key in list(state):
        m = re.match(r"^(.*\.attn\.)(?:[qkv]\.(?:weight|bias)|[qv]_bias)$", key)
        if m is None or m.group(1) in done:
            continue
        a = m.group(1)
        done.add(a)
        parts = [state.pop(f"{a}{n}.weight", None) for n in "qkv"]
        if any(p is not None for p in parts):
            if any(p is None for p in parts):
                raise ValueError(f"{a}: q, k and v weights must all be present")
            state[f"{a}qkv.weight"] = torch.cat(parts)
        q_b = state.pop(f"{a}q.bias", state.pop(f"{a}q_bias", None))
        k_b = state.pop(f"{a}k.bias", None)
        v_b = state.pop(f"{a}v.bias", state.pop(f"{a}v_bias", None))
        if q_b is not None or v_b is not None:
            ref = q_b if q_b is not None else v_b
            zero = torch.zeros_like(ref)
            state[f"{a}qkv.bias"] = torch.cat([b if b is not None else zero for b in (q_b, k_b, v_b)])
    return len(done)


# --------------------------------------------------------------------------------------------- to Hugging Face
_HF_FROM_OURS_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def to_hf_videomae(state: dict[str, torch.Tensor], prefix: str = "videomae.") -> dict[str, torch.Tensor]:
    """Our keys (``video_encoder.*`` and, when present, ``video_proj.*`` / ``decoder.*``) -> Hugging Face VideoMAE.

    ``prefix`` is ``"videomae."`` for ``VideoMAEForPreTraining`` and ``""`` for a bare ``VideoMAEModel``. q / v
    biases are written as ``q_bias`` / ``v_bias`` (the hub layout, which transformers 4 and 5 both read); our k
    bias is dropped (it cannot change attention, see the module docstring).
    """
    simple = {
        "video_encoder.patch_embed.proj.weight": f"{prefix}embeddings.patch_embeddings.projection.weight",
        "video_encoder.patch_embed.proj.bias": f"{prefix}embeddings.patch_embeddings.projection.bias",
        "video_encoder.norm.weight": f"{prefix}layernorm.weight",
        "video_encoder.norm.bias": f"{prefix}layernorm.bias",
        "video_proj.weight": "encoder_to_decoder.weight",
        "decoder.mask_token": "mask_token",
        **{f"decoder.{n}.{p}": f"decoder.{n}.{p}" for n in ("norm", "head") for p in ("weight", "bias")},
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"^(video_encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m is None:
            if key not in simple:
                raise ValueError(f"{key} has no place in Hugging Face VideoMAE")
            out[simple[key]] = value
            continue
        part, i, mod, kind = m.groups()
        base = f"{prefix}encoder.layer.{i}." if part == "video_encoder" else f"decoder.decoder_layers.{i}."
        if mod != "attn.qkv":
            out[f"{base}{_HF_FROM_OURS_BLOCK[mod]}.{kind}"] = value
        elif kind == "weight":
            for name, w in zip(("query", "key", "value"), value.chunk(3), strict=True):
                out[f"{base}attention.attention.{name}.weight"] = w
        else:
            q, _, v = value.chunk(3)  # (the k bias is dropped)
            out[f"{base}attention.attention.q_bias"], out[f"{base}attention.attention.v_bias"] = q, v
    return {k: v.contiguous() for k, v in out.items()}
