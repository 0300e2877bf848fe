"""Model FLOPs of a training step, analytic: every matrix product and the two attention products, forward x 3 for
forward and backward (x 2 for the patch projections, whose input needs no gradient), with the patch projections
over visible tokens only: what the model must compute, not what a particular implementation does. Checked against
PyTorch's ``FlopCounterMode`` by the tests."""

from __future__ import annotations

from ..config import Config, vit_dims
from ..models import num_visible


def _blocks_flops(tokens: int, width: int, depth: int, mlp_ratio: float) -> float:
    """Forward FLOPs of ``depth`` transformer blocks over one sequence: qkv, proj, MLP, QK^T and AV."""
    return depth * (2 * tokens * width * width * (4 + 2 * mlp_ratio) + 4 * tokens * tokens * width)


def grids(cfg: Config) -> tuple[int, int, int, int, int]:
    """(N video tokens, n visible, pixels per tubelet, image patches, visible image patches)."""
    m = cfg.model
    t, g = m.num_frames // m.tubelet_size, m.img_size // m.patch_size
    n = num_visible((t, g, g), cfg.mask.video_ratio, cfg.mask.video_type)
    n_img = num_visible((1, g, g), cfg.mask.image_ratio, "random")
    return t * g * g, n, 3 * m.tubelet_size * m.patch_size**2, g * g, n_img


def pretrain_flops(cfg: Config) -> float:
    """Model FLOPs of one CrossVideoMAE training step: two views, image branch, decoder; backward = 2 x forward,
    except for the patch projections, whose input (pixels) needs no gradient."""
    m = cfg.model
    width, depth, _ = vit_dims(m)
    E, r = m.embed_dim, m.mlp_ratio
    N, n, P, _, n_img = grids(cfg)
    video = _blocks_flops(n, width, depth, r) + 2 * n * width * E  # f_u, g_u
    decoder = _blocks_flops(N, E, m.decoder_depth, r) + 2 * N * E * P  # all tokens, head e_u
    image = _blocks_flops(n_img + 1, width, depth, r) + 2 * n_img * width * E  # f_f (with cls), g_f
    embed = 2 * (2 * n * P * width) + 2 * n_img * 3 * m.patch_size**2 * width  # per sample, visible tokens
    B, F = cfg.data.batch_size, cfg.data.num_sampled_frames
    return 3.0 * B * (2 * (video + decoder) + F * image) + 2.0 * B * embed


def videomae_flops(cfg: Config) -> float:
    """Model FLOPs of one VideoMAE training step (one view; the head runs on hidden tokens only)."""
    m = cfg.model
    width, depth, _ = vit_dims(m)
    E, r = m.embed_dim, m.mlp_ratio
    N, n, P, _, _ = grids(cfg)
    per_clip = _blocks_flops(n, width, depth, r) + 2 * n * width * E
    per_clip += _blocks_flops(N, E, m.decoder_depth, r) + 2 * (N - n) * E * P
    return cfg.data.batch_size * (3.0 * per_clip + 2.0 * (2 * n * P * width))
