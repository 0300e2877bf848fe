"""Typed configuration: dataclasses, YAML presets, ``key=value`` overrides and validation.

One root :class:`Config` holds every section; each sub-command reads the sections it needs. A config is built
from the dataclass defaults, then a YAML file (a packaged preset name such as ``tiny`` or a path), then the
command-line overrides. Unknown keys and values of the wrong type are errors naming the key; ranges and
cross-field rules are checked by :meth:`Config.validate`.

``sections.py`` holds the dataclasses and the ViT size table, ``loading.py`` presets, ``_base_`` inheritance,
overrides and saving, ``validation.py`` the rules.
"""

from .loading import PRESETS, from_dict, load_config, preset_path, save_config, to_dict
from .sections import (
    VIT_SIZES,
    AdaptConfig,
    AugConfig,
    Config,
    ConfigError,
    DataConfig,
    DistConfig,
    EvalConfig,
    InitConfig,
    LossConfig,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    SynthConfig,
    TrainConfig,
    vit_dims,
)
from .validation import _rules as _rules  # the rule list, read by the tests

__all__ = [
    "PRESETS",
    "VIT_SIZES",
    "AdaptConfig",
    "AugConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DistConfig",
    "EvalConfig",
    "InitConfig",
    "LossConfig",
    "MaskConfig",
    "ModelConfig",
    "OptimConfig",
    "SynthConfig",
    "TrainConfig",
    "from_dict",
    "load_config",
    "preset_path",
    "save_config",
    "to_dict",
    "vit_dims",
]
