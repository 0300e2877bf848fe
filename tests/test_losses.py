"""The losses against float64 loops written straight from the paper's eq. 1-7."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from crossvideomae.config import LossConfig
from crossvideomae.losses import CrossVideoMAELoss, nt_xent
from crossvideomae.models import Outputs

CASE = Path(__file__).resolve().parent / "data" / "ntxent_case.json"  # computed in float64 by a plain loop


def loop_ntxent(a, p, tau):
    """ℓ(a,p)_i = −log exp(s(a_i,p_i)/τ) / (Σ_{k≠i} exp(s(a_i,a_k)/τ) + Σ_k exp(s(a_i,p_k)/τ)), plain loops."""

    def s(x, y):
        return sum(xi * yi for xi, yi in zip(x, y, strict=False)) / math.sqrt(
            sum(v * v for v in x) * sum(v * v for v in y)
        )

    a, p = a.tolist(), p.tolist()
    out = []
    for i in range(len(a)):
        den = sum(math.exp(s(a[i], a[k]) / tau) for k in range(len(a)) if k != i)
        den += sum(math.exp(s(a[i], p[k]) / tau) for k in range(len(a)))
        out.append(-math.log(math.exp(s(a[i], p[i]) / tau) / den))
    return torch.tensor(out, dtype=torch.float64)


def _outputs(z_u1, z_u2, z_f1, z_f2, h_f, N=6, P=4):
    """Outputs with the given embeddings; z_f* and h_f are (B, F, E)."""
    B = z_u1.shape[0]
    return Outputs(
        pred=torch.randn(2 * B, N, P, dtype=torch.float64),
        target=torch.randn(2 * B, N, P, dtype=torch.float64),
        hidden=torch.rand(2 * B, N) < 0.7,
        z_u=torch.cat([z_u1, z_u2]),
        z_f=torch.cat([z_f1, z_f2]),
        h_f=h_f,
    )


def test_nt_xent_equals_float64_loop():
    a, p = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    assert torch.allclose(nt_xent(a, p, 0.07), loop_ntxent(a, p, 0.07), atol=1e-10)


def test_reference_case():
    case = json.loads(CASE.read_text())
    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in case["inputs"].items()}
    exp = case["expected"]
    tau = case["tau"]
    per_sample = {
        "ell_video_intra_per_sample": nt_xent(t["z_u1"], t["z_u2"], tau),
        "ell_frame_intra_per_sample": nt_xent(t["z_f1"], t["z_f2"], tau),
        "ell_video_cross_per_sample": nt_xent((t["z_u1"] + t["z_u2"]) / 2, t["h_u"], tau),
        "ell_frame_cross_per_sample": nt_xent((t["z_f1"] + t["z_f2"]) / 2, t["h_f"], tau),
    }
    for name, got in per_sample.items():
        assert torch.allclose(got, torch.tensor(exp[name], dtype=torch.float64), atol=1e-6, rtol=0), name
    cross = (per_sample["ell_video_cross_per_sample"] + per_sample["ell_frame_cross_per_sample"]).mean() / 2
    assert abs(cross.item() - exp["L_cross"]) < 1e-6
    # the loss module on the same inputs (it derives h_u from the sampled frames, so only L_intra is comparable)
    out = _outputs(t["z_u1"], t["z_u2"], t["z_f1"][:, None], t["z_f2"][:, None], t["h_f"][:, None])
    terms = CrossVideoMAELoss(LossConfig(tau=tau))(out)
    assert abs(terms["intra"].item() - exp["L_intra"]) < 1e-6


def test_loss_terms_equal_loops_with_several_sampled_frames():
    B, F, E, tau = 5, 3, 6, 0.1
    r = lambda *s: torch.randn(*s, dtype=torch.float64)  # noqa: E731
    z_u1, z_u2, z_f1, z_f2, h_f = r(B, E), r(B, E), r(B, F, E), r(B, F, E), r(B, F, E)
    out = _outputs(z_u1, z_u2, z_f1, z_f2, h_f)
    terms = CrossVideoMAELoss(LossConfig(tau=tau))(out)
    intra_frame = torch.stack([loop_ntxent(z_f1[:, j], z_f2[:, j], tau) for j in range(F)]).mean()
    cross_frame = torch.stack(
        [loop_ntxent((z_f1[:, j] + z_f2[:, j]) / 2, h_f[:, j], tau) for j in range(F)]
    ).mean()
    intra = (loop_ntxent(z_u1, z_u2, tau).mean() + intra_frame) / 2
    cross = (loop_ntxent((z_u1 + z_u2) / 2, h_f.mean(1), tau).mean() + cross_frame) / 2
    err = (out.pred - out.target).pow(2).mean(-1)
    rl = err[out.hidden].mean()
    mse = (out.pred[:B] - out.pred[B:]).pow(2).mean()
    assert torch.allclose(terms["intra"], intra) and torch.allclose(terms["cross"], cross)
    assert torch.allclose(terms["rl"], rl) and torch.allclose(terms["mse"], mse)
    assert torch.allclose(terms["total"], intra + cross + rl + mse)


SWITCHES = {
    "intra": ["intra_video", "intra_frame"],
    "cross": ["cross_video", "cross_frame"],
    "video_level": ["intra_video", "cross_video"],
    "frame_level": ["intra_frame", "cross_frame"],
    "rl": ["rl"],
    "mse": ["mse"],
}


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_removes_exactly_its_terms(switch):
    r = lambda *s: torch.randn(*s, dtype=torch.float64)  # noqa: E731
    out = _outputs(r(4, 6), r(4, 6), r(4, 1, 6), r(4, 1, 6), r(4, 1, 6))
    cfg = LossConfig(lambda_c=0.7, lambda_rl=1.3, lambda_mse=0.4)
    full = CrossVideoMAELoss(cfg)(out)
    off = CrossVideoMAELoss(dataclasses.replace(cfg, **{switch: False}))(out)
    removed = SWITCHES[switch]
    assert not any(name in off for name in removed)
    weight = {"rl": cfg.lambda_rl, "mse": cfg.lambda_mse}
    expected = full["total"] - sum(weight.get(n, cfg.lambda_c / 2) * full[n] for n in removed)
    assert torch.allclose(off["total"], expected)
    for name in set(full) - set(removed) - {"total", "intra", "cross"}:
        assert torch.equal(off[name], full[name])
