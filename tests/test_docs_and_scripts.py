"""The README's test command and docs/RELIABILITY.md say what is true of the code."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from crossvideomae.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_test_command_ends_with_the_count_of_tests():
    """scripts/test.sh's pytest options, on top of pyproject.toml's addopts, keep pytest's "N passed" line."""
    line = next(x for x in (ROOT / "scripts" / "test.sh").read_text().splitlines() if "-m pytest" in x)
    options = line.split("#")[0].split("-m pytest", 1)[1].replace('"$@"', "").split()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *options,
            "-p",
            "no:cacheprovider",
            "tests/test_config.py::test_bad_keys_and_values_name_the_key",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^=*\s*\d+ passed", proc.stdout.strip().splitlines()[-1]), proc.stdout


def _reliability() -> str:
    return (ROOT / "docs" / "RELIABILITY.md").read_text()


def test_reliability_page_documents_every_checkpoint_option():
    """Each ``train.*`` checkpoint option is named on the page, and the page does not deny one exists."""
    page = _reliability()
    options = [
        f"train.{f.name}"
        for f in dataclasses.fields(TrainConfig)
        if "checkpoint" in f.name or "ckpt" in f.name
    ]
    assert options and all(o in page for o in options), [o for o in options if o not in page]
    assert not re.search(r"no step-interval checkpoint", page, re.IGNORECASE)


def test_every_test_the_reliability_page_names_exists():
    names = set(re.findall(r"`(test_\w+\.py)::(test_\w+)", _reliability()))
    assert names
    missing = [f"{f}::{t}" for f, t in names if f"def {t}(" not in (ROOT / "tests" / f).read_text()]
    assert not missing, missing
