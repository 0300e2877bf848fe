"""Checkpoint files: atomic writes, loading that never executes pickled code, finding the newest one, and
loading / exporting weights in the layouts of MAE, VideoMAE, SpatioTemporalMAE, Hugging Face and timm.

A checkpoint is a ``torch.save`` file of plain containers, tensors and numbers, so ``torch.load(...,
weights_only=True)`` reads it. Writes go to a temporary file in the same folder, are flushed and fsync'ed,
then renamed over the target: a crash or a full disk leaves the previous file intact.

:func:`load_pretrained` reads any supported file or folder (the key mapping lives in
:mod:`crossvideomae.engine.convert`), fits position tables to the target and returns a :class:`LoadReport`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import VIT_SIZES, ModelConfig
from ..files import atomic_write
from ..layers import sincos_1d, sincos_2d
from ..models import CrossVideoMAE, ImageEncoder, VideoEncoder
from .convert import FORMATS, Converted, detect_format, to_hf_videomae, to_ours, unwrap


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read safely or does not fit; the message names the file."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


_np_core = getattr(np, "_core", None) or np.core
# Harmless classes that research checkpoints carry beside the weights (MAE and VideoMAE store their argparse
# options; numpy scalars appear in saved metrics). Building them runs no user code.
_BENIGN_GLOBALS = [
    argparse.Namespace,
    np.dtype,
    _np_core.multiarray.scalar,
    (_np_core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    *{type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")},
]


def _torch_load(path: Path, map_location: str | torch.device, mmap: bool = False) -> Any:
    with torch.serialization.safe_globals(_BENIGN_GLOBALS):
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


def _unsafe_globals(path: Path, err: Exception) -> str:
    """The classes / functions a refused pickle wanted to call (found without unpickling), for the message."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        found = []
    return ", ".join(found) if found else str(err).splitlines()[0]


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Read a checkpoint (torch pickle with weights_only=True, or safetensors) without running pickled code.
    ``mmap``: map a torch file's tensors instead of reading them (only its small pickled header is read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(map_location))
        except Exception as err:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})"
            ) from None
    try:
        return _torch_load(path, map_location, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled objects other than tensors and plain containers, "
            f"which could run code ({_unsafe_globals(path, err)}). Re-save it as a state dict or safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0]})") from None
    except Exception as err:  # on garbage the weights-only unpickler also raises KeyError, IndexError...
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__} while unpickling)"
        ) from None


_EPOCH = re.compile(r"checkpoint-(\d+)\.pth$")


def epoch_checkpoints(run_dir: str | Path) -> list[Path]:
    """``checkpoint-<epoch>.pth`` files of a run, oldest first."""
    found = [
        (int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint-*.pth") if (m := _EPOCH.search(p.name))
    ]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: Path) -> int:
    """The optimiser step a checkpoint holds. The file is memory-mapped, so only its small pickled header is
    read: a truncated file has lost the zip directory at its end and fails to open (:class:`CheckpointError`)."""
    return int(load_checkpoint(path, mmap=True).get("step", -1))


def _by_step(run_dir: str | Path) -> tuple[list[Path], list[str]]:
    """A run's checkpoints whose header loads, the most steps first (``checkpoint-last.pth`` first among
    equals), and the reasons of those that do not load."""
    found, refused = [], []
    for p in [Path(run_dir) / "checkpoint-last.pth", *reversed(epoch_checkpoints(run_dir))]:
        if p.is_file():
            try:
                found.append((checkpoint_step(p), p))
            except CheckpointError as err:
                refused.append(str(err))
    return [p for _, p in sorted(found, key=lambda sp: -sp[0])], refused


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """Newest complete checkpoint of a run: ``checkpoint-last.pth`` or the highest epoch whose header loads."""
    return next(iter(_by_step(run_dir)[0]), None)


def load_resumable(run_dir: str | Path) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The newest checkpoint of a run that loads, read; and why each one that does not load was skipped.

    (None, None, []) when the run has no checkpoint. Raises :class:`CheckpointError` naming every file and its
    reason when there are checkpoints and none of them loads: a resume must never start over silently.
    """
    newest_first, skipped = _by_step(run_dir)
    for path in newest_first:
        try:
            return path, load_checkpoint(path), skipped
        except CheckpointError as err:  # the header loaded, the tensors did not
            skipped.append(str(err))
    if skipped:
        raise CheckpointError(
            f"--resume: no checkpoint in {run_dir} loads (the run's files are left as they are): "
            + "; ".join(skipped)
        )
    return None, None, []


def rotate_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` epoch checkpoints holding the most steps; files that do not load count as
    the oldest, so the newest good checkpoint is never the one deleted."""
    ranked = []
    for i, p in enumerate(epoch_checkpoints(run_dir)):
        try:
            ranked.append((checkpoint_step(p), i, p))
        except CheckpointError:
            ranked.append((-1, i, p))
    for *_, p in sorted(ranked)[:-keep]:
        p.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- reading any layout
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
    format: str  # a key of convert.FORMATS
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


# ------------------------------------------------------------------------------------------- loading modules
@dataclass
class LoadReport:
    """What :func:`load_pretrained` did; ``str(report)`` is a short summary."""

    path: str
    source: str  # the detected layout, in words
    kind: str  # video | image | model
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # target keys left at their initial values
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys with no place in the target
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint (shape) vs model (shape)"
    skipped: list[str] = field(
        default_factory=list
    )  # checkpoint keys of other parts (decoder, classifier...)
    notes: list[str] = field(default_factory=list)  # conversions: fused qkv, regenerated or resized tables...

    @property
    def complete(self) -> bool:
        """Every target tensor came from the checkpoint."""
        return not self.missing and not self.mismatched

    def require_complete(self, to_allow: str) -> None:
        """Raise :class:`CheckpointError` (one line) unless every target tensor came from the checkpoint;
        ``to_allow`` says how the user accepts a partial load."""
        if self.complete:
            return
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        gaps = [
            f"{name} ({len(keys)}): {_collapse(keys)}"
            for name, keys in (("missing", self.missing), ("shape mismatch", self.mismatched))
            if keys
        ]
        what = {"video": "video encoder", "image": "image encoder", "model": "model"}[self.kind]
        raise CheckpointError(
            f"{self.path}: fills {len(self.loaded)} of {total} tensors of the {what}; {'; '.join(gaps)}: the rest "
            f"would stay at random init ({to_allow} accepts that)"
        )

    def __str__(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        lines = [
            f"loaded {self.kind} weights from {self.path} ({self.source}): {len(self.loaded)}/{total} tensors"
        ]
        for name, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatch", self.mismatched),
            ("skipped", self.skipped),
        ):
            if keys:
                lines.append(f"  {name} ({len(keys)}): {_collapse(keys)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _collapse(keys: list[str], limit: int = 8) -> str:
    """``blocks.0.x ... blocks.11.x`` -> ``blocks.*.x (x12)``; past ``limit`` patterns, counts per top-level part."""
    counts: dict[str, int] = {}
    for k in keys:
        pat = re.sub(r"\.\d+\.", ".*.", k)
        counts[pat] = counts.get(pat, 0) + 1
    if len(counts) > limit:
        counts = {}
        for k in keys:
            part = k.split(".")[0] + (".*" if "." in k else "")
            counts[part] = counts.get(part, 0) + 1
    return ", ".join(f"{k} (x{n})" if n > 1 else k for k, n in counts.items())


_PARTS = {"video": "video_encoder.", "image": "image_encoder.", "model": ""}


def load_pretrained(
    module: nn.Module, path: str | Path, kind: str | None = None, verbose: bool = True
) -> LoadReport:
    """Load the weights at ``path`` (any supported layout) into ``module`` and report what happened.

    module: a VideoEncoder, ImageEncoder or CrossVideoMAE. kind: video | image | model; None = from the module.
    On a CrossVideoMAE, kind video / image loads only that encoder. Fixed sin-cos tables in the file are checked
    and regenerated at the module's size; learned separable tables are interpolated to its grid. Raises
    :class:`CheckpointError` when nothing in the file fits.
    """
    if kind is None:
        kind = (
            "video"
            if isinstance(module, VideoEncoder)
            else "image"
            if isinstance(module, ImageEncoder)
            else "model"
        )
    if kind not in _PARTS:
        raise ValueError(f"kind must be video, image or model, not {kind!r}")
    if (isinstance(module, VideoEncoder) and kind != "video") or (
        isinstance(module, ImageEncoder) and kind != "image"
    ):
        raise ValueError(f"kind={kind!r} does not fit a {type(module).__name__}")
    target = module
    if isinstance(module, CrossVideoMAE) and kind != "model":
        target = module.video_encoder if kind == "video" else module.image_encoder
    src = read_source(path)
    prefix = _PARTS[kind]
    report = LoadReport(str(src.path), FORMATS[src.format], kind, notes=list(src.converted.notes))
    if src.container:
        report.source += f", container '{src.container}'"
    report.unexpected += src.converted.unexpected
    report.skipped += src.converted.skipped
    state = {}
    for k, v in src.converted.state.items():
        if k.startswith(prefix):
            state[k[len(prefix) :]] = v
        else:
            report.skipped.append(k)
    _fit_fixed_tables(target, state, report)
    own = target.state_dict()
    _fit_learned_tables(own, state, report)
    matched = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif v.shape != own[k].shape:
            report.mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
        else:
            matched[k] = v
    if not matched:
        parts = sorted({k.split(".")[0] for k in src.converted.state})
        what = {"video": "a video encoder", "image": "an image encoder", "model": "a CrossVideoMAE model"}[
            kind
        ]
        shapes = (
            f"; {len(report.mismatched)} tensors of another shape, e.g. {report.mismatched[0]}: a model of another "
            "size (the file's own model config builds one that fits)"
            if report.mismatched
            else ""
        )
        raise CheckpointError(
            f"{src.path}: nothing in it fits {what} ({FORMATS[src.format]}, holding {', '.join(parts) or 'no known tensors'})"
            + shapes
        )
    mismatched = {m.split(":")[0] for m in report.mismatched}
    report.missing = [k for k in own if k not in matched and k not in mismatched]
    report.loaded = list(matched)
    target.load_state_dict(matched, strict=False)
    if any(k.endswith("pos_embed_spatial") for k in report.unexpected):
        report.notes.append(
            "the checkpoint has learned separable position embeddings: build the model with "
            "model.pos_embed=separable to use them"
        )
    if verbose:
        print(report)
    return report


def _fit_fixed_tables(target: nn.Module, state: dict[str, torch.Tensor], report: LoadReport) -> None:
    """Drop stored copies of tables that the target keeps as fixed sin-cos buffers (regenerated at its size);
    a stored table that is not the sin-cos one was learned and cannot be used: it stays to be reported."""
    for key in list(state):
        owner_name, _, leaf = key.rpartition(".")
        try:
            owner = target.get_submodule(owner_name)
        except AttributeError:
            continue
        if leaf not in getattr(owner, "_non_persistent_buffers_set", ()):
            continue
        table = state[key].float()
        n, dim = table.shape[-2], table.shape[-1]
        g = math.isqrt(max(n - 1, 0))
        if isinstance(owner, ImageEncoder):
            ref = sincos_2d(g, dim, cls_token=True) if g * g == n - 1 else None
        else:
            ref = sincos_1d(n, dim)
        if (
            ref is not None
            and ref.shape == table.reshape(1, n, dim).shape
            and torch.allclose(ref, table.reshape(1, n, dim), atol=1e-4)
        ):
            del state[key]
            report.notes.append(f"{key}: the fixed sin-cos table, regenerated at this model's size")
        else:
            report.notes.append(
                f"{key}: a learned table, not usable: this model keeps a fixed sin-cos table there"
            )


def _fit_learned_tables(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], report: LoadReport
) -> None:
    """Interpolate learned separable position tables to the target grid: spatial bicubic, temporal linear."""
    for key, v in list(state.items()):
        if key not in own or own[key].shape == v.shape or v.shape[-1] != own[key].shape[-1]:
            continue
        n_src, n_dst, dim = v.shape[1], own[key].shape[1], v.shape[-1]
        if key.endswith("pos_embed_spatial"):
            g_src, g_dst = math.isqrt(n_src), math.isqrt(n_dst)
            if g_src**2 != n_src or g_dst**2 != n_dst:
                continue
            grid = v.float().reshape(1, g_src, g_src, dim).permute(0, 3, 1, 2)  # (1, D, g, g)
            grid = F.interpolate(grid, size=(g_dst, g_dst), mode="bicubic", align_corners=False)
            state[key] = grid.permute(0, 2, 3, 1).reshape(1, n_dst, dim).to(v.dtype)
            report.notes.append(f"{key}: interpolated {g_src}x{g_src} -> {g_dst}x{g_dst} (bicubic)")
        elif key.endswith("pos_embed_temporal"):
            line = F.interpolate(
                v.float().transpose(1, 2), size=n_dst, mode="linear", align_corners=False
            )  # (1, D, t)
            state[key] = line.transpose(1, 2).to(v.dtype)
            report.notes.append(f"{key}: interpolated {n_src} -> {n_dst} time slices (linear)")


# ------------------------------------------------------------------------------------------------- exports
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
