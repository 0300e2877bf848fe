"""Loading weights into a module: :func:`load_pretrained` reads any supported file or folder (:mod:`.read`), fits
position tables to the target and returns a :class:`LoadReport`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed

from ..engine.checkpoint import CheckpointError
from ..layers import sincos_1d, sincos_2d
from ..models import CrossVideoMAE, ImageEncoder, VideoEncoder
from .formats import FORMATS
from .read import read_source


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
    """Interpolate learned separable position tables to the target grid with timm's ``resample_abs_pos_embed``:
    spatial bicubic, temporal linear."""
    for key, v in list(state.items()):
        if key not in own or own[key].shape == v.shape or v.shape[-1] != own[key].shape[-1]:
            continue
        n_src, n_dst = v.shape[1], own[key].shape[1]
        if key.endswith("pos_embed_spatial"):
            g_src, g_dst = math.isqrt(n_src), math.isqrt(n_dst)
            if g_src**2 != n_src or g_dst**2 != n_dst:
                continue
            state[key] = resample_abs_pos_embed(
                v,
                [g_dst, g_dst],
                [g_src, g_src],
                num_prefix_tokens=0,
                interpolation="bicubic",
                antialias=False,
            )
            report.notes.append(f"{key}: interpolated {g_src}x{g_src} -> {g_dst}x{g_dst} (bicubic)")
        elif key.endswith("pos_embed_temporal"):  # a (t, 1) grid: bilinear there is linear in time
            state[key] = resample_abs_pos_embed(
                v, [n_dst, 1], [n_src, 1], num_prefix_tokens=0, interpolation="bilinear", antialias=False
            )
            report.notes.append(f"{key}: interpolated {n_src} -> {n_dst} time slices (linear)")
