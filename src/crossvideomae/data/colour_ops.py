"""View 2's colour ops for :class:`~crossvideomae.data.device_augment.DeviceAugment`, batched over clips: each
kernel computes what torchvision's tensor kernel computes for one clip, with one parameter per clip, and
:func:`affine_matrix` gives the inverse affine matrix torchvision's RandAugment warps a clip with. Bit-identical
to torchvision clip by clip on the CPU (tests/test_data_device_augment.py). :func:`compiled` gives a kernel as one
fused GPU kernel (``data.augment_compile``): within one grey level of torchvision instead of bit-identical."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn.functional import conv2d
from torchvision.transforms.functional import _get_inverse_affine_matrix
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_grayscale_image, _rgb_to_hsv

from .transforms import to_device


# Colour ops with one parameter per clip, as torchvision's tensor kernels compute them with one parameter per
# call: x (n, T, 3, H, W) uint8; f, a (n, 1, 1, 1, 1) float32 per clip, the factor and, for the blends, the
# 1 - factor that torchvision computes in double precision. torchvision's blend x·f + y·(1 - f) is
# ``x.mul(f).add_(y, alpha=1 - f)``, one fused multiply-add after the product, which ``addcmul`` is too;
# clamping and the cast to uint8 (truncation) follow it.
def _blend(x: torch.Tensor, y: torch.Tensor, f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(x.mul(f), y, a).clamp_(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return _rgb_to_grayscale_image(x, num_output_channels=1, preserve_dtype=False).floor_()


def brightness(x: torch.Tensor, f: torch.Tensor, *_) -> torch.Tensor:
    return x.mul(f).clamp_(0, 255).to(torch.uint8)


def saturation(x: torch.Tensor, f: torch.Tensor, a: torch.Tensor, *_) -> torch.Tensor:
    return _blend(x, _gray(x), f, a)


def contrast(x: torch.Tensor, f: torch.Tensor, a: torch.Tensor, *_) -> torch.Tensor:
    return _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), f, a)  # each frame's own mean


def sharpness(x: torch.Tensor, f: torch.Tensor, a: torch.Tensor, *_) -> torch.Tensor:
    """torchvision's ``adjust_sharpness``: the inner pixels blended with a rounded 3x3 blur."""
    H, W = x.shape[-2:]
    if H <= 2 or W <= 2:
        return x
    w, c = 1.0 / 13.0, 5.0 / 13.0
    kernel = to_device(torch.tensor([[w, w, w], [w, c, w], [w, w, w]]), x.device).expand(3, 1, 3, 3)
    out = x.to(torch.float32, copy=True)
    blurred = conv2d(out.view(-1, 3, H, W), kernel, groups=3).round_().view(*x.shape[:-2], H - 2, W - 2)
    inner = out[..., 1:-1, 1:-1]
    inner.addcmul_(blurred.sub_(inner), a)
    return out.clamp_(0, 255).to(torch.uint8)


def hue(x: torch.Tensor, f: torch.Tensor, *_) -> torch.Tensor:
    """torchvision's ``adjust_hue``: the hue channel shifted by each clip's factor in HSV."""
    h, s, v = _rgb_to_hsv(TF.to_dtype(x, torch.float32, scale=True)).unbind(dim=-3)
    h.add_(f[..., 0]).remainder_(1.0)
    return TF.to_dtype(_hsv_to_rgb(torch.stack((h, s, v), dim=-3)), torch.uint8, scale=True)


def solarize(x: torch.Tensor, threshold: torch.Tensor, *_) -> torch.Tensor:
    return torch.where(x >= threshold, x.bitwise_not(), x)  # compared in float32, as with a Python threshold


def posterize(x: torch.Tensor, mask: torch.Tensor, *_) -> torch.Tensor:
    return x & mask.to(torch.uint8)


def _bits_mask(bits: int) -> int:
    return 255 if bits >= 8 else ((1 << bits) - 1) << (8 - bits)


VALUES = 6  # per-clip values of a colour op, padded: two for the colour ops, the 2x3 matrix for "affine"
AFFINE_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def affine_matrix(op: str, magnitude: float, height: int, width: int) -> tuple[float, ...] | None:
    """The inverse affine matrix (six numbers, row-major 2x3) that torchvision's RandAugment warps a clip of
    this size with for a geometric op at this signed magnitude: ``()`` where it leaves the clip as it is (a
    rotation by 0), None where the op is not a warp here (not geometric, or a rotation by a quarter turn,
    which torchvision does with ``rot90``). The same arguments as its ``_apply_image_or_video_transform``."""
    if op not in AFFINE_OPS:
        return None
    if op == "Rotate":  # rotate_image: the angle modulo 360, its fast paths, then the matrix of -angle
        angle = magnitude % 360
        if angle == 0:
            return ()
        if angle in (90.0, 180.0, 270.0):
            return None
        return tuple(_get_inverse_affine_matrix([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0]))
    if op in ("ShearX", "ShearY"):  # affine_image with center [0, 0]: the top-left corner
        shear = math.degrees(math.atan(magnitude))
        center = [0 - width * 0.5, 0 - height * 0.5]
        shears = [shear, 0.0] if op == "ShearX" else [0.0, shear]
        return tuple(_get_inverse_affine_matrix(center, 0.0, [0.0, 0.0], 1.0, shears))
    shift = [float(int(magnitude)), 0.0] if op == "TranslateX" else [0.0, float(int(magnitude))]
    return tuple(_get_inverse_affine_matrix([0.0, 0.0], 0.0, shift, 1.0, [0.0, 0.0]))


# the kernels that :func:`compiled` fuses: every per-pixel op but sharpness, whose blur weights reach the device
# by a pinned copy (which a compiled graph cannot trace) and whose convolution is a library kernel either way
FUSED = frozenset({brightness, saturation, contrast, hue, solarize, posterize})
_COMPILED: dict[Callable, Callable] = {}


def compiled(kernel: Callable) -> Callable:
    """A colour kernel through ``torch.compile``: its chain of eager operators and float32 intermediates becomes
    one generated kernel that reads and writes uint8; one graph for any number of clips (``dynamic``). The
    generated code may round a product or a division differently from the eager operators, so a pixel can land
    one grey level away from torchvision's."""
    if kernel not in _COMPILED:
        _COMPILED[kernel] = torch.compile(kernel, dynamic=True)
    return _COMPILED[kernel]


# RandAugment ops batched over magnitudes: kernel, and the per-clip values from the signed magnitude, computed
# as torchvision's RandAugment computes its arguments
RANDAUG_PER_CLIP: dict[str, tuple[Callable, Callable[[float], tuple[float, float]]]] = {
    "Brightness": (brightness, lambda m: (1.0 + m, 0.0)),
    "Color": (saturation, lambda m: (1.0 + m, 1.0 - (1.0 + m))),
    "Contrast": (contrast, lambda m: (1.0 + m, 1.0 - (1.0 + m))),
    "Sharpness": (sharpness, lambda m: (1.0 + m, 1.0 - (1.0 + m))),
    "Solarize": (solarize, lambda m: (255 * m, 0.0)),
    "Posterize": (posterize, lambda m: (float(_bits_mask(int(m))), 0.0)),
}
# ColorJitter's ops in the order of its fn_idx: the factor's name in ``make_params``, kernel, per-clip values
JITTER: tuple[tuple[str, Callable, Callable[[float], tuple[float, float]]], ...] = (
    ("brightness_factor", brightness, lambda f: (f, 0.0)),
    ("contrast_factor", contrast, lambda f: (f, 1.0 - f)),
    ("saturation_factor", saturation, lambda f: (f, 1.0 - f)),
    ("hue_factor", hue, lambda f: (f, 0.0)),
)
