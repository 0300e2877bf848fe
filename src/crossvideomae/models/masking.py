"""Mask generators: which tokens each sample keeps visible.

Every generator returns ``ids_keep`` (B, n_keep), sorted ascending, with the *same* ``n_keep`` for every sample
(an exact ratio per sample, and static shapes for torch.compile). Token order is time-major: token
``i`` lies in time slice ``i // (h * w)``.

Frame-level embeddings need a visible token in the sampled frame's time slice. ``random`` and ``tube``
masking keep at least one visible token in every slice whenever the budget allows (n_keep >= slices).
``frame`` masking hides whole slices by design; there the frame-level embedding falls back to the nearest
slice with visible tokens (see :func:`crossvideomae.models.crossvideomae.slice_mean`).
"""

from __future__ import annotations

import torch

MASK_TYPES = ("random", "tube", "frame")


def num_visible(grid: tuple[int, int, int], ratio: float, kind: str = "random") -> int:
    """Visible-token count of a (t, h, w) token grid at masking ``ratio`` (at least one token)."""
    t, h, w = grid
    if kind == "random":
        return max(1, round(t * h * w * (1.0 - ratio)))
    if kind == "tube":
        return t * max(1, round(h * w * (1.0 - ratio)))
    if kind == "frame":
        return h * w * max(1, round(t * (1.0 - ratio)))
    raise ValueError(f"unknown mask type '{kind}'; expected one of {MASK_TYPES}")


def _keep_lowest(noise: torch.Tensor, n_keep: int) -> torch.Tensor:
    return noise.argsort(dim=1)[:, :n_keep].sort(dim=1).values


def random_mask(batch: int, grid: tuple[int, int, int], ratio: float, device=None) -> torch.Tensor:
    """Uniformly random tokens; one token per time slice is forced visible when the budget allows."""
    t, h, w = grid
    n_keep = num_visible(grid, ratio, "random")
    noise = torch.rand(batch, t, h * w, device=device)
    if n_keep >= t:  # the lowest-noise token of each slice goes first
        noise.scatter_(2, noise.argmin(dim=2, keepdim=True), -1.0)
    return _keep_lowest(noise.flatten(1), n_keep)


def tube_mask(batch: int, grid: tuple[int, int, int], ratio: float, device=None) -> torch.Tensor:
    """The same random spatial positions visible in every time slice."""
    t, h, w = grid
    n_sp = num_visible(grid, ratio, "tube") // t
    spatial = _keep_lowest(torch.rand(batch, h * w, device=device), n_sp)  # (B, n_sp)
    offsets = torch.arange(t, device=spatial.device)[:, None] * (h * w)  # (t, 1)
    return (offsets[None] + spatial[:, None]).flatten(1)  # (B, t * n_sp), ascending


def frame_mask(batch: int, grid: tuple[int, int, int], ratio: float, device=None) -> torch.Tensor:
    """Whole time slices visible or hidden."""
    t, h, w = grid
    n_t = num_visible(grid, ratio, "frame") // (h * w)
    slices = _keep_lowest(torch.rand(batch, t, device=device), n_t)  # (B, n_t)
    within = torch.arange(h * w, device=slices.device)
    return (slices[:, :, None] * (h * w) + within).flatten(1)  # (B, n_t * h * w), ascending


def make_mask(kind: str, batch: int, grid: tuple[int, int, int], ratio: float, device=None) -> torch.Tensor:
    """ids_keep (B, n_keep) for mask type ``kind``."""
    fn = {"random": random_mask, "tube": tube_mask, "frame": frame_mask}.get(kind)
    if fn is None:
        raise ValueError(f"unknown mask type '{kind}'; expected one of {MASK_TYPES}")
    return fn(batch, grid, ratio, device)


def hidden_mask(ids_keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Boolean (B, N): True where a token is hidden."""
    mask = torch.ones(ids_keep.shape[0], num_tokens, dtype=torch.bool, device=ids_keep.device)
    return mask.scatter(1, ids_keep, False)
