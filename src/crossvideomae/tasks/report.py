"""``crossvideomae report RUN_DIR``: one Markdown page, ``RUN_DIR/report.md``, describing a run.

Sections: the results table (``results.json``), a summary of ``metrics.jsonl`` (first, lowest and last value
of every logged term, with the loss curves drawn when the run did not draw them), the pictures found in the
run folder, the files there, and the config (``config.yaml``). Links are relative, so the folder can be moved
or published as it is. The report command's own output folder (``--output-dir``) receives only its
``config.yaml`` and ``results.json``; do not point it at RUN_DIR, whose ``config.yaml`` it would replace.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..config import Config
from ..viz.losses import curve_keys, plot_losses, read_metrics

PICTURES = (".png", ".gif", ".jpg", ".svg")
MAX_PICTURES = 40  # a folder of extracted frames should not turn into a page of thousands
EPOCH_PICTURE = re.compile(r"^(.*)-epoch(\d+)$")  # reconstruction-epoch0010.png: one of a series


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="folder of a run (pretrain, linprobe, finetune, ...)")


def number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple, dict)):
        return f"`{json.dumps(v)}`"
    return str(v)


def size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested results -> ``{"a.b": value}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    return [cells(header), cells(["---"] * len(header)), *map(cells, rows), ""]


def results_table(path: Path, title: str, level: int) -> list[str]:
    """Scalars as one key/value table; a list of records (e.g. the per-epoch ``history``) as its own table."""
    results = json.loads(path.read_text())
    records = {
        k: v for k, v in results.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
    }
    scalars = flatten({k: v for k, v in results.items() if k not in records})
    lines = [
        "#" * level + f" {title}",
        "",
        *table(["key", "value"], [[k, number(v)] for k, v in scalars.items()]),
    ]
    for name, rows in records.items():
        columns = list(dict.fromkeys(k for r in rows for k in r))
        lines += ["#" * (level + 1) + f" {name}", ""]
        lines += table(columns, [[number(r.get(c, "")) for c in columns] for r in rows])
    return lines


def results_section(run_dir: Path) -> list[str]:
    """The run's ``results.json``, then those of runs in its direct sub-folders (e.g. a demo's readout)."""
    path = run_dir / "results.json"
    if path.is_file():
        lines = results_table(path, "Results", 2)
    else:
        lines = ["## Results", "", "No `results.json`: the run did not finish (or is still running).", ""]
    for sub in sorted(p.parent for p in run_dir.glob("*/results.json")):
        lines += results_table(sub / "results.json", f"Results of `{sub.name}/`", 3)
    return lines


def metrics_section(run_dir: Path) -> list[str]:
    path = run_dir / "metrics.jsonl"
    rows = read_metrics(path) if path.is_file() else []
    if not rows:
        return []
    lines = [
        "## Training",
        "",
        f"{len(rows)} logged steps, last step {rows[-1]['step']}, epoch {rows[-1].get('epoch', '?')}.",
        "",
    ]
    body = []
    for key in curve_keys(rows):
        pts = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
        finite = [p for p in pts if math.isfinite(p[1])]
        low = min(finite, key=lambda p: p[1]) if finite else (None, math.nan)
        bad = len(pts) - len(finite)
        body.append(
            [key, number(pts[0][1]), f"{number(low[1])} (step {low[0]})", number(pts[-1][1]), str(bad)]
        )
    lines += table(["term", "first", "lowest", "last", "non-finite"], body)
    if not (run_dir / "pictures" / "losses.png").is_file():
        plot_losses(path, run_dir / "pictures" / "losses.png")
    return lines


def pictures_section(run_dir: Path) -> list[str]:
    """Every picture of the run (up to MAX_PICTURES); of a per-epoch series only the first and the last."""
    found = sorted(
        p for p in run_dir.rglob("*") if p.suffix.lower() in PICTURES and not p.name.startswith(".")
    )
    series: dict[str, list[Path]] = {}
    single = []
    for p in found:
        m = EPOCH_PICTURE.match(p.stem)
        (series.setdefault(str(p.parent / m.group(1)), []) if m else single).append(p)
    lines = ["## Pictures", ""]
    if not found:
        return lines + ["None found.", ""]
    for p in single[:MAX_PICTURES]:
        rel = p.relative_to(run_dir).as_posix()
        lines += [f"### {rel}", "", f"![{p.stem}]({rel})", ""]
    if len(single) > MAX_PICTURES:
        lines += [f"... and {len(single) - MAX_PICTURES} more pictures in the folder.", ""]
    for name, paths in series.items():
        paths.sort(key=lambda p: int(EPOCH_PICTURE.match(p.stem).group(2)))
        shown = paths if len(paths) <= 2 else [paths[0], paths[-1]]
        lines += [
            f"### {Path(name).relative_to(run_dir).as_posix()}: {len(paths)} epochs, first and last shown",
            "",
        ]
        lines += [f"![{p.stem}]({p.relative_to(run_dir).as_posix()})" for p in shown] + [""]
    return lines


def files_section(run_dir: Path) -> list[str]:
    files = sorted(p for p in run_dir.iterdir() if p.is_file() and p.name != "report.md")
    rows = [[f"`{p.name}`", size(p.stat().st_size)] for p in files]
    return ["## Files", "", *table(["file", "size"], rows)]


def config_section(run_dir: Path) -> list[str]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return []
    return [
        "## Config",
        "",
        "<details><summary>config.yaml</summary>",
        "",
        "```yaml",
        path.read_text().rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]


def run(cfg: Config, out_dir: Path, args) -> dict[str, Any]:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise SystemExit(f"crossvideomae report: no run folder at {run_dir}")
    lines = [f"# Run report: `{run_dir.resolve().name}`", ""]
    lines += results_section(run_dir)
    lines += metrics_section(run_dir)  # may draw pictures/losses.png, so before the pictures
    lines += pictures_section(run_dir)
    lines += files_section(run_dir)
    lines += config_section(run_dir)
    report = run_dir / "report.md"
    report.write_text("\n".join(lines))
    return {"report": str(report), "pictures": sum(1 for line in lines if line.startswith("!["))}
