"""Command line: ``crossvideomae <command> [--config FILE] [--output-dir DIR] [--resume] [key=value ...]``.

Argument parsing only. Each command lives in ``crossvideomae.tasks.<module>`` and provides
``run(cfg, out_dir, args) -> dict`` (its final figures) and, optionally, ``add_arguments(parser)`` for
positional inputs. The harness here loads and validates the config, writes ``DIR/config.yaml`` before the
command runs and ``DIR/results.json`` after.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config, save_config
from .files import atomic_write

# command -> (module in crossvideomae.tasks, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write the built-in synthetic video dataset (mp4 files + list files)"),
    "prepare": ("prepare", "turn an official dataset layout into list files and a label map"),
    "sample-frames": ("sample_frames", "extract a pre-sampled frame dataset from a list of videos"),
    "pretrain": ("pretrain", "CrossVideoMAE pretraining"),
    "pretrain-image": (
        "pretrain_image",
        "image MAE pretraining of the image encoder on the images under data.train_list (for init.image=)",
    ),
    "adapt": ("adapt", "test-time adaptation: K updates per batch of target data from given weights"),
    "linprobe": ("linprobe", "linear probe of the frozen video encoder eval.checkpoint=PATH"),
    "finetune": (
        "finetune",
        "fine-tune the video encoder eval.checkpoint=PATH for classification, then the multi-view test",
    ),
    "test": ("test", "multi-view test of the fine-tuned checkpoint eval.checkpoint=PATH"),
    "retrieve": (
        "retrieve",
        "video retrieval with the encoder eval.checkpoint=PATH: val clips query train clips, R@k",
    ),
    "extract": (
        "extract",
        "features of the encoder eval.checkpoint=PATH for a list of videos -> tensor file + index",
    ),
    "readout": (
        "readout",
        "the encoder eval.checkpoint=PATH vs random init: retrieval and linear probe table",
    ),
    "visualize": ("visualize", "reconstruction and attention pictures for a video"),
    "report": ("report", "one page with a run's config, results and pictures"),
    "convert": ("convert", "convert checkpoints between MAE / VideoMAE / SpatioTemporalMAE / HF and ours"),
    "bench": ("bench", "time pretraining steps on the GPU against a Hugging Face VideoMAE baseline"),
}
# The commands that train (engine.train.fit) and so continue a run with --resume; the others take no --resume.
RESUMABLE = ("pretrain", "pretrain-image", "adapt", "finetune")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossvideomae",
        description="CrossVideoMAE pretraining and evaluation. Each command reads a config (--config FILE or "
        "preset, then key=value overrides) and writes config.yaml and results.json into its run folder.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--config",
            "-c",
            default=None,
            help="YAML file or packaged preset (tiny, vits_synth, vitb_k400, vitb_ssv2)",
        )
        p.add_argument("--output-dir", "-o", default=None, help=f"run folder (default: runs/{name})")
        if name in RESUMABLE:
            p.add_argument(
                "--resume", action="store_true", help="continue from the newest checkpoint in the run folder"
            )
        task = _task(module, required=False)
        if task is not None and hasattr(task, "add_arguments"):
            task.add_arguments(p)  # command-specific options and positionals, before the overrides
        p.add_argument(
            "overrides", nargs="*", default=[], help="key=value config overrides, e.g. optim.lr=1e-3"
        )
    return parser


def _task(module: str, required: bool = True):
    try:
        return importlib.import_module(f"crossvideomae.tasks.{module}")
    except ModuleNotFoundError as err:
        if required or err.name != f"crossvideomae.tasks.{module}":
            raise
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, default=str).encode()))


def _write_config(cfg: Config, out_dir: Path) -> None:
    """``DIR/config.yaml`` is the config of the latest invocation (a resumed run may raise ``train.epochs``); a
    replaced one with other content is kept as ``DIR/config-N.yaml``. Each checkpoint also holds its config."""
    path = out_dir / "config.yaml"
    old = path.read_text() if path.is_file() else None
    save_config(cfg, path)
    if old is not None and old != path.read_text():
        n = 1
        while (out_dir / f"config-{n}.yaml").exists():
            n += 1
        (out_dir / f"config-{n}.yaml").write_text(old)


def _results_command(out_dir: Path) -> str | None:
    """The command whose ``results.json`` the folder holds (None: none, or one that does not say)."""
    try:
        return json.loads((out_dir / "results.json").read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def _check_run_folder(command: str, out_dir: Path, resume: bool) -> None:
    """Refuse, before anything is written, a folder that holds an earlier training run (without --resume) or
    another command's results, and one that cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SystemExit(f"crossvideomae {command}: --output-dir {out_dir} is a file, not a folder")
    if not resume and next(out_dir.glob("checkpoint-*.pth"), None) is not None:
        raise SystemExit(
            f"crossvideomae {command}: {out_dir} holds the checkpoints of an earlier run; add --resume to "
            "continue it or choose another --output-dir (nothing was written)"
        )
    owner = _results_command(out_dir)
    if owner not in (None, command):
        raise SystemExit(
            f"crossvideomae {command}: {out_dir} holds the results of `crossvideomae {owner}`; choose "
            "another --output-dir (nothing was written)"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as err:
        raise SystemExit(
            f"crossvideomae {command}: cannot write into --output-dir {out_dir}: {err}"
        ) from None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one command; returns its results dict (also written to ``DIR/results.json``)."""
    args = _parser().parse_args(argv)
    overrides = [o for o in args.overrides if "=" in o]
    extras = [o for o in args.overrides if "=" not in o]
    if extras:
        raise SystemExit(
            f"crossvideomae {args.command}: unexpected argument(s) {extras}; overrides are key=value"
        )
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        raise SystemExit(f"crossvideomae {args.command}: {err}") from None
    out_dir = Path(args.output_dir or f"runs/{args.command}")
    _check_run_folder(args.command, out_dir, getattr(args, "resume", False))
    task = _task(COMMANDS[args.command][0])
    from .engine.distributed import is_main_process

    if is_main_process():
        _write_config(cfg, out_dir)
    results = task.run(cfg, out_dir, args)
    if is_main_process():
        write_json(out_dir / "results.json", {"command": args.command, **results})
    return results


def entry() -> None:
    """The console script. Errors of the user's inputs or of the run itself become a short message and exit
    status 1 instead of a traceback; ``main`` raises them (for tests and for use from Python)."""
    from .data import DecodeError, ListError, TooManyBadVideos
    from .engine.checkpoint import CheckpointError
    from .engine.train import NonFiniteLossError

    known = (ConfigError, ListError, CheckpointError, TooManyBadVideos, NonFiniteLossError, DecodeError)
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    try:
        main(sys.argv[1:])
    except known as err:
        sys.exit(f"crossvideomae {command}: {err}")
    except KeyboardInterrupt:  # outside training, or a second Ctrl-C there: stop at once, as asked
        print(f"crossvideomae {command}: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        sys.exit(
            f"crossvideomae {command}: {err}. Files are written atomically: those written before are intact. "
            "Free some space, then run the command again (with --resume to continue a training run)."
        )
