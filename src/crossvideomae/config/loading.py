"""Building a :class:`Config`: dataclass defaults, then a YAML file (a packaged preset name or a path, with
``_base_`` inheritance), then ``key=value`` overrides; saving it and reading it back."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .sections import Config, ConfigError

PRESETS = ("tiny", "vits_synth", "vits_study", "vitb_k400", "vitb_ssv2", "finetune_small")


def preset_path(name_or_path: str) -> Path:
    """A YAML path, or the packaged preset of that name."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    ref = resources.files("crossvideomae") / "configs" / f"{name_or_path}.yaml"
    if not ref.is_file():
        raise ConfigError(f"unknown preset '{name_or_path}'; packaged presets: {', '.join(PRESETS)}")
    return Path(str(ref))


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """Load a YAML file; a top-level ``_base_: NAME`` (or a list of names, later ones on top) inherits from other
    presets or files."""
    if path in seen:
        raise ConfigError(f"config inheritance loop through {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    base = raw.pop("_base_", None)
    node = OmegaConf.create(raw)
    bases = base if isinstance(base, list) else [] if base is None else [base]
    for name in reversed(bases):  # `_base_: [a, b]`: a, then b on top, then this file
        node = OmegaConf.merge(_load_yaml(preset_path(str(name)), seen + (path,)), node)
    return node


def load_config(config: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML (preset name or path) <- ``key=value`` overrides, type-checked and validated."""
    item = None
    try:
        node = OmegaConf.structured(Config)
        if config:
            node = OmegaConf.merge(node, _load_yaml(preset_path(config)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form key=value")
        for item in overrides:  # one at a time: some errors (a tuple of the wrong length) carry no key
            value = item + "''" if item.endswith("=") else item  # `key=`: "" (OmegaConf would read None)
            node = OmegaConf.merge(node, OmegaConf.from_dotlist([value]))
        item = None
        cfg = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or (item.split("=", 1)[0] if item else None)
        msg = str(err).splitlines()[0]
        raise ConfigError(f"config key '{key}': {msg}" if key else msg) from None
    assert isinstance(cfg, Config)
    return cfg.validate()


def to_dict(cfg: Config) -> dict[str, Any]:
    return _plain(dataclasses.asdict(cfg))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a config saved by :func:`to_dict` (e.g. from a checkpoint), with the same checks."""
    try:
        node = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(d))
        cfg = OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    assert isinstance(cfg, Config)
    return cfg.validate()


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
