"""The performance pages and their result files agree: every result file they name is in benchmarks/results/,
and every file there backs a figure on one of them (no orphan outputs). The product reads nothing outside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = [ROOT / "docs" / "PERFORMANCE.md", ROOT / "docs" / "PERFORMANCE-LOG.md"]


def _named() -> set[str]:
    """Result files named on the pages (their names start with the card or with ``loader``)."""
    text = "\n".join(p.read_text() for p in PAGES)
    return set(re.findall(r"`((?:h100|h200|loader)_[\w.-]+\.(?:json|txt))`", text))


def test_every_named_result_file_exists_and_every_file_is_named():
    files = {p.name for p in RESULTS.iterdir()}
    named = _named()
    assert named - files == set(), "named on the pages but missing"
    assert files - named == set(), "in benchmarks/results but backing no figure"


def test_docs_cite_nothing_outside_the_repository():
    """Every relative path that climbs out of a page's folder lands on a file of this repository."""
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for ref in re.findall(r"(?<![.\w])(?:\.\./)+[\w./-]*\w", page.read_text()):
            target = (page.parent / ref).resolve()
            assert target.is_relative_to(ROOT) and target.exists(), f"{page.name}: {ref}"
