"""The device a command runs on."""

from __future__ import annotations

import torch

from ..config import ConfigError


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a device; a CUDA device this machine does not have is a :class:`ConfigError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        found = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA"
        raise ConfigError(
            f"config key 'train.device': {name} asked, this machine has {found} (use auto or cpu)"
        )
    return device
