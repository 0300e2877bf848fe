"""Reconstructed clips in pixel space: the decoder's per-patch normalised predictions turned back into RGB.

The decoder predicts each tubelet normalised by its own statistics (``loss.norm_pix``). As in the MAE and
VideoMAE visualisations, a prediction is re-scaled with the mean and standard deviation of the *input*
patch at the same position, then the dataset normalisation (``data.mean`` / ``data.std``) is undone. For
hidden patches this borrows the true patch statistics: the picture shows structure, not absolute colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.crossvideomae import CrossVideoMAE, patchify, unpatchify
from ..models.masking import hidden_mask


@dataclass
class Reconstruction:
    """One masked pass of the video branch, every tensor in the dataset-normalised space of the input."""

    video: torch.Tensor  # (B, C, T, H, W) the input clip
    pred: torch.Tensor  # (B, C, T, H, W) decoder output for every tubelet, un-normalised per patch
    hidden: torch.Tensor  # (B, 1, T, H, W) 1.0 where the tubelet was hidden from the encoder

    def pasted(self) -> torch.Tensor:
        """Visible tubelets from the input, hidden ones from the prediction (MAE's "reconstruction + visible")."""
        return self.video * (1 - self.hidden) + self.pred * self.hidden


def predicted_pixels(model: CrossVideoMAE, video: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Invert :meth:`CrossVideoMAE.targets`: pred (B, N, P) -> clip (B, C, T, H, W) in the input's space."""
    x = patchify(video.float(), model.tubelet, model.patch)  # (B, N, P)
    pred = pred.float()
    mode = model.norm_pix
    if mode == "patch":
        pixels = pred * (x.var(-1, keepdim=True) + 1e-6).sqrt() + x.mean(-1, keepdim=True)
    elif mode == "channel":
        B, N, _ = x.shape
        x, pred = x.reshape(B, N, -1, 3), pred.reshape(B, N, -1, 3)  # (B, N, pt*ph*pw, C)
        std = x.var(2, keepdim=True, unbiased=True).sqrt() + 1e-6
        pixels = (pred * std + x.mean(2, keepdim=True)).reshape(B, N, -1)
    else:
        pixels = pred
    return unpatchify(pixels, model.grid, model.tubelet, model.patch)


def denormalise(x: torch.Tensor, mean, std, channel_dim: int = 1) -> torch.Tensor:
    """Undo the dataset normalisation and clip to [0, 1]; ``channel_dim`` is where the 3 colours are."""
    shape = [1] * x.ndim
    shape[channel_dim] = -1
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x * std + mean).clamp(0, 1)


def picture_mask(model: CrossVideoMAE, batch: int, seed: int = 0) -> torch.Tensor:
    """ids_keep (B, n) of the configured video masking, drawn from a fixed seed so that pictures of different
    epochs share one mask and the training RNG stream is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.mask_video(batch, "cpu")


@torch.no_grad()
def reconstruct(
    model: CrossVideoMAE, video: torch.Tensor, ids_keep: torch.Tensor | None = None
) -> Reconstruction:
    """Encode the visible tubelets of video (B, C, T, H, W), decode every tubelet, return pixel-space clips.

    ids_keep (B, n) picks the visible tokens; None draws :func:`picture_mask`.
    """
    device = video.device
    if ids_keep is None:
        ids_keep = picture_mask(model, video.shape[0])
    ids_keep = ids_keep.to(device)
    pred = model.decoder(model.encode_video(video, ids_keep), ids_keep)  # (B, N, P)
    t, h, w = model.grid
    hidden = hidden_mask(ids_keep, t * h * w)[..., None].float()  # (B, N, 1)
    P = pred.shape[-1] // 3
    hidden = unpatchify(hidden.expand(-1, -1, P), model.grid, model.tubelet, model.patch)  # (B, 1, T, H, W)
    return Reconstruction(video=video.float(), pred=predicted_pixels(model, video, pred), hidden=hidden)
