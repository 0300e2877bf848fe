"""CrossVideoMAE losses (paper eq. 1-11).

    ℓ(a, p)_i = −log exp(s(a_i,p_i)/τ) / ( Σ_{k≠i} exp(s(a_i,a_k)/τ) + Σ_k exp(s(a_i,p_k)/τ) )
    L_intra = mean_i [ℓ(z_u¹, z_u²)_i + ℓ(z_f¹, z_f²)_i] / 2
    L_cross = mean_i [ℓ(z̄_u, h_u)_i + ℓ(z̄_f, h_f)_i] / 2
    L       = λ_c (L_intra + L_cross) + λ_rl L_rl + λ_mse L_mse

Each term has a switch; a switched-off term is neither computed nor returned, and the halves of L_intra
and L_cross keep their 1/2 weight, so turning a switch off removes exactly that term from the total.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .config import LossConfig
from .models.crossvideomae import Outputs


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in at least fp32: bf16 / fp16 -> fp32, fp64 stays fp64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """MAE's loss: the mean squared error per token (B, N, P) -> (B, N), averaged over the hidden tokens."""
    err = (_wide(pred) - _wide(target)).pow(2).mean(dim=-1)  # (B, N)
    weight = hidden.to(err.dtype)
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def _gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather along the batch with gradients; returns (global tensor, offset of this rank's rows)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    import torch.distributed._functional_collectives as fc

    # backward: every rank's gradient of this rank's rows, summed. torch >= 2.14 deprecates
    # torch.distributed.nn.functional.all_gather for all_gather_single_autograd; torch 2.11's predecessor of
    # that (all_gather_tensor_autograd) fails on a non-contiguous incoming gradient, so older torch keeps the
    # legacy function
    offset = dist.get_rank() * x.shape[0]
    if hasattr(fc, "all_gather_single_autograd"):
        return fc.all_gather_single_autograd(x.contiguous(), 0, dist.group.WORLD), offset
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous())), offset


def nt_xent(a: torch.Tensor, p: torch.Tensor, tau: float, global_negatives: bool = True) -> torch.Tensor:
    """Per-anchor NT-Xent (N,) for anchors a (N, D) and positives p (N, D), negatives = the other anchors and
    all positives; under torch.distributed, of the global batch when ``global_negatives``."""
    a = F.normalize(_wide(a), dim=-1)
    p = F.normalize(_wide(p), dim=-1)
    a_all, offset = _gather(a) if global_negatives else (a, 0)
    p_all, _ = _gather(p) if global_negatives else (p, 0)
    n = a.shape[0]
    rows = torch.arange(n, device=a.device)
    to_pos = a @ p_all.T / tau  # (n, N_g)
    is_self = torch.arange(a_all.shape[0], device=a.device)[None, :] == (rows + offset)[:, None]  # (n, N_g)
    to_anchors = (a @ a_all.T / tau).masked_fill(is_self, float("-inf"))  # k ≠ i
    logits = torch.cat([to_pos, to_anchors], dim=1)  # (n, 2 N_g)
    return F.cross_entropy(logits, rows + offset, reduction="none")


class CrossVideoMAELoss(nn.Module):
    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg

    def _pair(self, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Mean NT-Xent; a, p are (B, E) or (B, F, E) (then averaged over the F sampled frames)."""
        if a.dim() == 2:
            return nt_xent(a, p, self.cfg.tau, self.cfg.global_negatives).mean()
        return torch.stack([self._pair(a[:, j], p[:, j]) for j in range(a.shape[1])]).mean()

    def contrastive_terms(self, out: Outputs) -> dict[str, torch.Tensor]:
        c = self.cfg
        B = out.h_f.shape[0]
        z_u1, z_u2, z_f1, z_f2 = out.z_u[:B], out.z_u[B:], out.z_f[:B], out.z_f[B:]
        pairs = {}
        if c.intra and c.video_level:
            pairs["intra_video"] = (z_u1, z_u2)
        if c.intra and c.frame_level:
            pairs["intra_frame"] = (z_f1, z_f2)
        if c.cross and c.video_level:
            pairs["cross_video"] = ((z_u1 + z_u2) / 2, out.h_f.mean(dim=1))  # z̄_u vs h_u
        if c.cross and c.frame_level:
            pairs["cross_frame"] = ((z_f1 + z_f2) / 2, out.h_f)  # z̄_f vs h_f, per sampled frame
        return {name: self._pair(a, p) for name, (a, p) in pairs.items()}

    def forward(self, out: Outputs) -> dict[str, torch.Tensor]:
        """Every enabled term by name, plus 'total'."""
        c = self.cfg
        terms = self.contrastive_terms(out)
        total = _wide(out.pred.new_zeros(()))
        for group in ("intra", "cross"):
            parts = [v for k, v in terms.items() if k.startswith(group)]
            if parts:
                terms[group] = torch.stack(parts).sum() / 2
                total = total + c.lambda_c * terms[group]
        if c.rl:
            terms["rl"] = reconstruction_loss(out.pred, out.target, out.hidden)
            total = total + c.lambda_rl * terms["rl"]
        if c.mse:
            B = out.h_f.shape[0]
            pred = _wide(out.pred)
            terms["mse"] = (pred[:B] - pred[B:]).pow(2).mean()
            total = total + c.lambda_mse * terms["mse"]
        terms["total"] = total
        return terms
