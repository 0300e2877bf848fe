"""Evaluation inputs that cannot work raise an exception from the library (``ConfigError``, ``CheckpointError``);
the console script turns it into one line and exit status 1."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import TINY

from crossvideomae.cli import entry
from crossvideomae.config import ConfigError, load_config
from crossvideomae.engine.checkpoint import CheckpointError
from crossvideomae.eval.encoders import build_encoder, load_classifier
from crossvideomae.eval.inputs import list_path
from crossvideomae.models import build_model


def test_an_empty_list_is_a_config_error(tiny_cfg):
    with pytest.raises(ConfigError, match=r"data\.val_list is empty"):
        list_path(tiny_cfg, "val")


def test_test_without_a_checkpoint_is_a_config_error(tiny_cfg):
    with pytest.raises(ConfigError, match=r"eval\.checkpoint=PATH"):
        load_classifier(tiny_cfg)


def test_a_checkpoint_that_does_not_fit_the_encoder_is_refused(tmp_path):
    path = tmp_path / "shallow.pth"
    torch.save({"model": build_model(load_config(None, [*TINY, "model.depth=1"])).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"shallow\.pth: does not fit the video encoder"):
        build_encoder(load_config(None, TINY), checkpoint=str(path))


def test_a_checkpoint_without_a_head_is_not_a_fine_tuned_one(tmp_path):
    path = tmp_path / "pretrained.pth"
    torch.save({"model": build_model(load_config(None, TINY)).state_dict()}, path)
    with pytest.raises(CheckpointError, match="no classification head"):
        load_classifier(load_config(None, [*TINY, f"eval.checkpoint={path}"]))


def test_the_console_script_prints_one_line_and_exits_1(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["crossvideomae", "test", "-o", str(tmp_path), *TINY])
    with pytest.raises(SystemExit) as info:
        entry()
    message = info.value.code
    assert isinstance(message, str) and "\n" not in message  # Python prints it and exits with status 1
    assert message.startswith("crossvideomae test: test needs eval.checkpoint=PATH")


def test_readout_without_a_checkpoint_and_kind_without_kinds_are_config_errors(tmp_path):
    from crossvideomae.cli import main
    from crossvideomae.eval.probes import select_labels

    with pytest.raises(ConfigError, match=r"readout compares .* set eval\.checkpoint=PATH"):
        main(["readout", "-o", str(tmp_path), *TINY])
    with pytest.raises(ConfigError, match="carry no object kind"):
        select_labels({"kind": torch.tensor([-1, -1])}, "kind")
