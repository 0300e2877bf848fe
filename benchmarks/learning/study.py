"""The learning benchmark: does CrossVideoMAE pretraining give a video encoder that transfers?

One command runs the whole study, or continues it (a job whose ``results.json`` exists is not run again):

    python benchmarks/learning/study.py --out runs/study --arms full video_only --seeds 0 1 --budget-s 240

1. data: ``crossvideomae synth --config vits_study`` (a new background per video, 8 colours, camera shake,
   sensor noise; 12 motion classes that need frame order, 5 object kinds);
2. pretraining: every arm x seed side by side on one GPU (the loader workers split the CPU cores). Without
   ``--epochs``, a short calibration of the same runs side by side sizes the epoch count so that each run
   takes about ``--budget-s`` seconds. With ``--stage2-epochs N``, the paper's two stages in miniature:
   stage 1 is the ``video_only`` arm plus an image MAE (``pretrain-image``) on 4 frames sampled from each
   training video (``sample-frames``); stage 2 is CrossVideoMAE initialised from both (``stage2_full``)
   against video-only MAE continued from the same stage-1 encoder (``stage2_video_only``), N epochs each,
   decoders new in both;
3. evaluation of every encoder, and of the same architecture at random initialisation (``train.seed`` =
   the pretraining seed): ``readout`` (kNN R@1 on centred features, linear probe, attentive probe; motion
   and object kind) and ``finetune`` with the small-data recipe (``finetune_small``), plus fine-tuning from
   scratch; ``--ft-recipes mean attentive ...`` fine-tunes with each named variant of that recipe (``FT_RECIPES``:
   the classifier's pooling ``eval.ft_pool``, layer-wise lr decay, a smaller lr, LP-FT from the readout's
   attentive probe);
   ``--paper-recipe ARM`` adds the paper's recipe for that arm;
   ``--labels N`` evaluates with N labelled training clips (a class-balanced subset; pretraining still sees every
   clip, unlabelled) into ``OUT/labelsN/``: the low-label test, where fine-tuning from scratch has less to learn from;
4. one table: each cell the mean over seeds and, in brackets, the spread (max - min); ``study.json`` holds
   every run's figures, ``study.md`` the table.

``--extra key=value ...`` is appended to every command, e.g. a dry run on a CPU (it checks that the commands run):

    --epochs 1 --eval-parallel 2 --extra model.size=tiny model.depth=1 train.device=cpu synth.num_train=24 \\
        synth.num_val=12 data.batch_size=4 data.num_workers=0 data.augment=cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# pretraining arms: overrides on top of the preset (the paper's objective is "full")
ARMS: dict[str, list[str]] = {
    "full": [],
    "video_only": ["loss.intra=false", "loss.cross=false", "loss.mse=false"],  # VideoMAE's objective
    "rl_intra": ["loss.cross=false", "loss.mse=false"],  # + intra-modal contrast
    "rl_cross": ["loss.intra=false", "loss.mse=false"],  # + cross-modal contrast
    "rl_mse": ["loss.intra=false", "loss.cross=false"],  # + the decoder MSE between the two views
    "no_mse": ["loss.mse=false"],  # full without the decoder-embedding MSE
    "head": ["model.contrastive_head=mlp"],  # full, contrastive terms through an MLP head
    "mask95": ["mask.video_ratio=0.95", "mask.image_ratio=0.9"],  # the paper's best mask ratios
    "lambda_c_0.1": ["loss.lambda_c=0.1"],
    # the λ_c sweep: the contrast at a hundredth of the reconstruction
    "lambda_c_0.01": ["loss.lambda_c=0.01"],
    # a thousandth: about where the contrastive terms' gradient on the video encoder falls to a tenth of the
    # reconstruction's (at initialisation they are 20-50 times larger: benchmarks/learning/grad_balance.py)
    "lambda_c_0.001": ["loss.lambda_c=0.001"],
    # the same without L_mse, whose weight does not follow λ_c: reconstruction + a small contrast only
    "lambda_c_0.001_no_mse": ["loss.lambda_c=0.001", "loss.mse=false"],
    # around it: three times more and three times less contrast, without L_mse
    "lambda_c_0.003_no_mse": ["loss.lambda_c=0.003", "loss.mse=false"],
    "lambda_c_0.0003_no_mse": ["loss.lambda_c=0.0003", "loss.mse=false"],
    # each view's moving pixels on another clip's background (FAME): no background shared by the two views and
    # the frame, so the contrastive terms cannot identify a clip by it; with and without L_mse, which asks the
    # views (now on different backgrounds) for the same reconstruction
    "fame": ["aug.background_merge=0.4"],
    "fame_no_mse": ["aug.background_merge=0.4", "loss.mse=false"],
    # the merge and a hue shift of up to half the colour circle on view 2: the views share neither background nor
    # the object's colour, so what is left to match a clip by is its object's shape and size and its trajectory
    "fame_hue": ["aug.background_merge=0.4", "aug.hue=0.5"],
    # the contrastive terms through their own MLP head and at a tenth of the weight (CAN-style balance): the
    # reconstruction keeps the encoder, the contrast gets a space of its own
    "head_lambda_c_0.1": ["model.contrastive_head=mlp", "loss.lambda_c=0.1"],
}
# the paper's two stages (--stage2-epochs): stage 1 = the video_only arm + an image MAE on sampled frames
# (`pretrain-image`); stage 2 = these arms, initialised from stage 1, for --stage2-epochs more epochs
STAGE2: dict[str, tuple[list[str], bool]] = {  # arm: (overrides, image encoder from the stage-1 image MAE)
    "stage2_full": ([], True),  # CrossVideoMAE from both stage-1 encoders
    "stage2_video_only": (ARMS["video_only"], False),  # video-only MAE continued for the same steps
}
# fine-tuning variants of finetune_small: name -> (the runs' folder, column key, header, overrides)
FT_RECIPES: dict[str, tuple[str, str, str, list[str]]] = {
    "mean": ("finetune", "ft_motion", "fine-tune motion", ["eval.ft_pool=mean"]),  # the paper's pooling
    "attentive": ("finetune_attentive", "ft_attentive_motion", "fine-tune motion, attentive pooling",
                  ["eval.ft_pool=attentive"]),
    # the encoder's blocks at a fraction of the head's lr (BEiT / MAE layer decay), so that a random head's
    # first gradients do not wash out the pretrained features
    "attentive_ld75": ("finetune_attentive_ld75", "ft_attentive_ld75_motion",
                       "fine-tune motion, attentive pooling, layer decay 0.75",
                       ["eval.ft_pool=attentive", "eval.ft_layer_decay=0.75"]),
    "attentive_lr_quarter": ("finetune_attentive_lr_quarter", "ft_attentive_lr_quarter_motion",
                             "fine-tune motion, attentive pooling, lr / 4",
                             ["eval.ft_pool=attentive", "eval.ft_base_lr=2.5e-4"]),
    # LP-FT: the pooling and head start from the attentive probe that the same seed's readout fitted on the
    # frozen encoder (for scratch, on the random-init encoder of that seed); runs after the readouts
    "attentive_lpft": ("finetune_attentive_lpft", "ft_attentive_lpft_motion",
                       "fine-tune motion, attentive pooling from the attentive probe (LP-FT)",
                       ["eval.ft_pool=attentive"]),
}  # fmt: skip
LPFT = "attentive_lpft"  # the recipe whose jobs wait for the readout's probes
COLUMNS = (  # (key in a row, header); the fine-tuning columns go after the frozen motion ones
    ("knn_motion", "kNN R@1 motion"),
    ("linear_motion", "linear motion"),
    ("attn_motion", "attentive motion"),
    *((key, header) for _, key, header, _ in FT_RECIPES.values()),
    ("knn_kind", "kNN R@1 kind"),
    ("attn_kind", "attentive kind"),
)


def sh(cmd: list[str], log: Path, env: dict | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)


class Study:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self.data = self.out / "data"
        self.cvm = [sys.executable, "-m", "crossvideomae"]
        self.after: dict[Path, Path] = {}  # an evaluation job's run dir -> the readout it starts from
        self.common = [
            f"data.train_list={self.data / 'train.txt'}",
            f"data.val_list={self.data / 'val.txt'}",
            *args.extra,
        ]
        # --labels N: every evaluation sees N labelled training clips (pretraining still sees them all,
        # unlabelled), in its own folder beside the full-label one
        self.evals = self.out / f"labels{args.labels}" if args.labels else self.out
        labelled = self.data / (f"train_labels{args.labels}.txt" if args.labels else "train.txt")
        self.eval_common = [f"data.train_list={labelled}", *self.common[1:]]

    def workers(self, slots: int) -> str:
        return f"data.num_workers={max(1, (os.cpu_count() or 2) // slots)}"

    def run_all(self, jobs: list[tuple[str, list[str], Path]], slots: int) -> None:
        """Run (name, argv, run dir) jobs in order, ``slots`` at a time; a run dir whose results.json says it ran
        to the end is done, one that a signal stopped (a time limit) continues from its checkpoint with --resume.
        A job whose run dir ``self.after`` maps to another job's of the same list starts when that one ends."""
        todo = [j for j in jobs if not _finished(j[2])]
        if not todo:
            return
        t0 = time.time()
        print(f"[study] {len(todo)} job(s), {slots} at a time: " + ", ".join(j[0] for j in todo), flush=True)
        finished = {run_dir: threading.Event() for _, _, run_dir in todo}

        def one(job):
            name, argv, run_dir = job
            before = self.after.get(run_dir)
            if before in finished:
                finished[before].wait()
            if next(run_dir.glob("checkpoint-*.pth"), None) is not None:
                argv = [*argv[:4], "--resume", *argv[4:]]  # after python -m crossvideomae COMMAND
            rc = sh(argv, run_dir.parent / f"{run_dir.name}.log")
            finished[run_dir].set()
            print(f"[study] {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} at {time.time() - t0:.0f} s",
                  flush=True)  # fmt: skip
            return rc

        with ThreadPoolExecutor(slots) as pool:
            list(pool.map(one, todo))

    # ------------------------------------------------------------------------------------------- phases
    def synth(self) -> None:
        if not (self.data / "val.txt").is_file():
            self.write_data()
        if self.args.labels:
            self.label_subset(self.args.labels)

    def label_subset(self, n: int) -> None:
        """``train_labels{n}.txt``: n training clips, as many of each class as n allows (seeded choice)."""
        path = self.data / f"train_labels{n}.txt"
        if path.is_file():
            return
        by_class: dict[str, list[str]] = {}
        for line in (self.data / "train.txt").read_text().splitlines():
            if line.strip():
                by_class.setdefault(line.split()[-1], []).append(line)
        rng = random.Random(0)
        for lines in by_class.values():
            rng.shuffle(lines)
        per_class = -(-n // len(by_class))
        chosen = [line for lines in by_class.values() for line in lines[:per_class]][:n]
        path.write_text("\n".join(sorted(chosen)) + "\n")
        kinds = self.data / "train_kinds.txt"  # the object kinds' sidecar, looked up by path
        if kinds.is_file():
            shutil.copyfile(kinds, path.with_name(f"{path.stem}_kinds.txt"))

    def write_data(self) -> None:
        t0 = time.time()
        rc = sh([*self.cvm, "synth", "-c", self.args.preset, "-o", str(self.data), *self.args.extra],
                self.out / "synth.log")  # fmt: skip
        if rc:
            sys.exit(f"synth failed: see {self.out / 'synth.log'}")
        print(f"[study] synth: {time.time() - t0:.0f} s", flush=True)

    def pretrain_argv(self, run: Path, overrides: list[str], seed: int, epochs: int, slots: int) -> list[str]:
        """``pretrain`` of the preset into ``run`` with the study's data, ``overrides``, seed and epochs."""
        return [*self.cvm, "pretrain", "-c", self.args.preset, "-o", str(run), *self.common, *overrides,
                f"train.seed={seed}", f"train.epochs={epochs}", self.workers(slots)]  # fmt: skip

    def pretrain_jobs(self, epochs: int, steps_per_epoch: int = 0, tag: str = "pretrain"):
        slots = len(self.args.arms) * len(self.args.seeds)
        jobs = []
        for arm in self.args.arms:
            for seed in self.args.seeds:
                run = self.out / tag / f"{arm}-s{seed}"
                argv = self.pretrain_argv(run, ARMS[arm], seed, epochs, slots)
                argv.append(f"train.steps_per_epoch={steps_per_epoch}")
                if tag != "pretrain":  # a calibration: no pictures, no export needed
                    argv.append("train.viz_every=0")
                jobs.append((f"{tag} {arm} s{seed}", argv, run))
        return jobs, slots

    def eval_arms(self) -> list[str]:
        """The pretrained arms, and the stage-2 ones with --stage2-epochs."""
        return [*self.args.arms, *(STAGE2 if self.args.stage2_epochs else [])]

    def image_run(self, seed: int) -> Path:
        """Stage 1's image MAE run of ``seed``."""
        return self.out / "stage1_image" / f"s{seed}"

    def stage1_image_jobs(self, slots: int) -> list:
        """Stage 1's image MAE: frames sampled from the training videos, then one image MAE per seed (it needs no
        video encoder, so it runs side by side with the arms' pretraining)."""
        a = self.args
        frames = self.out / "frames"
        jobs = [("sample frames", [*self.cvm, "sample-frames", "-c", a.preset, "-o", str(frames), "-n", "4",
                 str(self.data / "train.txt"), *a.extra], frames)]  # fmt: skip
        for seed in a.seeds:
            run = self.image_run(seed)
            self.after[run] = frames
            jobs.append((f"image MAE s{seed}", [*self.cvm, "pretrain-image", "-c", a.preset, "-o", str(run),
                         f"data.train_list={frames}", *a.extra, f"train.seed={seed}",
                         f"train.epochs={a.stage2_epochs}", self.workers(slots)], run))  # fmt: skip
        return jobs

    def stage2(self) -> None:
        """The stage-2 arms from stage 1's video-only MAE (the same seed) and its image MAE."""
        a = self.args
        jobs, slots = [], len(a.seeds) * len(STAGE2)
        for arm, (overrides, with_image) in STAGE2.items():
            for seed in a.seeds:
                run = self.out / "pretrain" / f"{arm}-s{seed}"
                video = self.out / "pretrain" / f"video_only-s{seed}" / "video_encoder.safetensors"
                init = [f"init.video={video}"]
                if with_image:
                    init.append(f"init.image={self.image_run(seed) / 'image_encoder.safetensors'}")
                argv = self.pretrain_argv(run, [*overrides, *init], seed, a.stage2_epochs, slots)
                jobs.append((f"{arm} s{seed}", argv, run))
        self.run_all(jobs, slots)

    def epochs(self) -> int:
        """--epochs, or what fills --budget-s by a calibration of the same runs side by side."""
        if self.args.epochs:
            (self.out / "epochs.json").write_text(json.dumps({"epochs": self.args.epochs}))
            return self.args.epochs
        if (self.out / "epochs.json").is_file():  # a continued study keeps its epoch count
            return json.loads((self.out / "epochs.json").read_text())["epochs"]
        steps = max(1, sum(1 for _ in open(self.data / "train.txt")) // self.args.batch_size)  # per epoch
        calib = self.args.calib_steps  # whole epochs when it is longer than one (steps_per_epoch only caps)
        jobs, slots = self.pretrain_jobs(-(-calib // steps), min(calib, steps), tag="calibration")
        self.run_all(jobs, slots)
        # s_per_step: the wall time per step after the first, epoch ends and loader stalls included (the
        # median step time leaves those out and undercounts a loader-bound run by half)
        s_per_step = max(json.loads((run / "results.json").read_text())["s_per_step"] for _, _, run in jobs)
        epochs = max(2, int(self.args.budget_s / (steps * s_per_step)))
        print(f"[study] calibration: {s_per_step * 1e3:.0f} ms per step side by side -> {epochs} epochs",
              flush=True)  # fmt: skip
        (self.out / "epochs.json").write_text(json.dumps({"s_per_step": s_per_step, "epochs": epochs}))
        return epochs

    def eval_jobs(self) -> list:
        a = self.args
        small = self.out / "finetune_small.yaml"
        small.write_text(f"_base_: [{a.preset}, finetune_small]\n")
        jobs = []

        def small_finetunes(label: str, base: list[str], probe: Path) -> None:  # label: an arm, or "scratch"
            for name in a.ft_recipes:
                folder, _, _, overrides = FT_RECIPES[name]
                run = self.evals / folder / f"{label}-s{seed}"
                if name == LPFT:
                    overrides = [*overrides, f"eval.ft_head_init={probe}"]
                    self.after[run] = probe.parent
                jobs.append((f"finetune ({name}) {label} s{seed}",
                             [*self.cvm, "finetune", "-c", str(small), "-o", str(run), *base,
                              f"eval.epochs={a.ft_epochs}", *overrides], run))  # fmt: skip

        for arm in self.eval_arms():
            for seed in a.seeds:
                ckpt = self.out / "pretrain" / f"{arm}-s{seed}" / "video_encoder.safetensors"
                base = [*self.eval_common, f"train.seed={seed}", f"eval.checkpoint={ckpt}"]
                run = self.evals / "readout" / f"{arm}-s{seed}"
                jobs.append((f"readout {arm} s{seed}",
                             [*self.cvm, "readout", "-c", a.preset, "-o", str(run), *base], run))  # fmt: skip
                small_finetunes(arm, base, run / "attentive_probe-pretrained-label.safetensors")
                if arm in a.paper_recipe:
                    run = self.evals / "finetune_paper" / f"{arm}-s{seed}"
                    jobs.append((f"finetune (paper recipe) {arm} s{seed}",
                                 [*self.cvm, "finetune", "-c", a.preset, "-o", str(run), *base,
                                  f"eval.epochs={a.paper_epochs}"], run))  # fmt: skip
        first = self.eval_arms()[0]  # its readout's random-init probe of each seed starts scratch's LP-FT
        for seed in a.seeds:
            probe = self.evals / "readout" / f"{first}-s{seed}" / "attentive_probe-random-label.safetensors"
            small_finetunes("scratch", [*self.eval_common, f"train.seed={seed}"], probe)
        slots = a.eval_parallel
        # readouts first, then the LP-FT jobs that wait for them, then the rest
        jobs.sort(key=lambda j: 0 if j[0].startswith("readout") else 1 if j[2] in self.after else 2)
        return [(n, [*argv, self.workers(slots)], run) for n, argv, run in jobs]

    # ------------------------------------------------------------------------------------------- table
    def rows(self) -> dict[str, dict[str, list[float]]]:
        """{encoder row: {column: [one value per seed]}}."""
        table: dict[str, dict[str, list[float]]] = {}

        def put(row: str, col: str, value: float) -> None:
            table.setdefault(row, {}).setdefault(col, []).append(value)

        for arm in self.eval_arms():
            for seed in self.args.seeds:
                res = _results(self.evals / "readout" / f"{arm}-s{seed}")
                for r in res.get("table", []):
                    # every arm's readout holds the same random-init rows of its seed: the first arm's count
                    if r["encoder"] == "random" and arm != self.args.arms[0]:
                        continue
                    label = "motion" if r["label"] == "label" else "kind"
                    row = arm if r["encoder"] == "pretrained" else "random init"
                    put(row, f"knn_{label}", r["R@1"])
                    put(row, f"attn_{label}", r["attn_acc1"])
                    if label == "motion":
                        put(row, "linear_motion", r["probe_acc1"])
                for folder, key, _, _ in FT_RECIPES.values():
                    ft = _results(self.evals / folder / f"{arm}-s{seed}").get("test")
                    if ft:
                        put(arm, key, ft["acc1"])
                paper = _results(self.evals / "finetune_paper" / f"{arm}-s{seed}").get("test")
                if paper:
                    put(f"{arm}, paper fine-tune recipe", "ft_motion", paper["acc1"])
        for seed in self.args.seeds:
            for folder, key, _, _ in FT_RECIPES.values():
                ft = _results(self.evals / folder / f"scratch-s{seed}").get("test")
                if ft:
                    put("random init", key, ft["acc1"])
        return table

    def report(self, epochs: int, wall: float) -> None:
        table = self.rows()
        columns = [(key, h) for key, h in COLUMNS if any(key in cols for cols in table.values())] or COLUMNS
        lines = ["| encoder | " + " | ".join(h for _, h in columns) + " |",
                 "|---|" + "---:|" * len(columns)]  # fmt: skip
        for row, cols in table.items():
            cells = [_cell(cols.get(key, [])) for key, _ in columns]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        md = "\n".join(lines)
        pretrain = {}
        for arm in self.eval_arms():
            for seed in self.args.seeds:
                res = _results(self.out / "pretrain" / f"{arm}-s{seed}")
                if res:
                    pretrain[f"{arm}-s{seed}"] = {k: res.get(k) for k in
                                                  ("steps", "wall_time_s", "step_time_median_s", "final_terms")}  # fmt: skip
        for seed in self.args.seeds if self.args.stage2_epochs else []:  # stage 1's image MAE
            res = _results(self.image_run(seed))
            if res:
                pretrain[f"stage1_image-s{seed}"] = {
                    k: res.get(k) for k in ("steps", "wall_time_s", "final_terms")
                }
        previous = _results_file(self.evals / "study.json")
        report_only = self.args.phases == ["report"] and bool(previous)
        if report_only:  # a report alone keeps the run's own command and time
            wall = previous.get("wall_time_s", wall)
        finetune = {}
        for run in sorted(self.evals.glob("finetune*/*/results.json")):
            res = _results_file(run)
            finetune[f"{run.parent.parent.name}/{run.parent.name}"] = {
                "epoch_loss": [round(h["total"], 4) for h in res.get("history", [])],
                "peak_lr": res.get("peak_lr"),
                "steps": res.get("steps"),
            }
        summary = {
            "command": previous.get("command") if report_only else shlex.join([sys.executable, *sys.argv]),
            "arms": {a: ARMS[a] if a in ARMS else STAGE2[a][0] for a in self.eval_arms()},
            "stage2_epochs": self.args.stage2_epochs,
            "labels": self.args.labels or "all",
            "seeds": self.args.seeds,
            "epochs": epochs,
            "wall_time_s": round(wall, 1),
            "table": table,
            "pretrain": pretrain,
            "finetune": finetune,
            # a report alone, written elsewhere, keeps the card and Python of the run it reports
            "card": previous.get("card", _card()) if report_only else _card(),
            "python": previous.get("python", platform.python_version())
            if report_only
            else platform.python_version(),
        }
        self.evals.mkdir(parents=True, exist_ok=True)
        (self.evals / "study.json").write_text(json.dumps(summary, indent=2))
        (self.evals / "study.md").write_text(md + "\n")
        print(md if table else "[study] no evaluation has finished yet", flush=True)


def _finished(run: Path) -> bool:
    """``run`` holds the results of a job that ran to its end (not one stopped by a signal)."""
    results = _results(run)
    return bool(results) and results.get("stopped_by") is None


def _recorded_epochs(out: Path) -> int:
    f = out / "epochs.json"
    return json.loads(f.read_text())["epochs"] if f.is_file() else 0


def _results_file(f: Path) -> dict:
    return json.loads(f.read_text()) if f.is_file() else {}


def _results(run: Path) -> dict:
    return _results_file(run / "results.json")


def _cell(values: list[float]) -> str:
    """mean (spread = max - min over seeds), or the single value."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ({max(values) - min(values):.1f})"


def _card() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, {os.cpu_count()} CPU cores"
        return f"CPU only, torch {torch.__version__}, {os.cpu_count()} CPU cores"
    except ImportError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/study")
    p.add_argument("--preset", default="vits_study")
    p.add_argument("--arms", nargs="+", default=["full", "video_only"], choices=sorted(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--budget-s", type=float, default=240.0, help="pretraining seconds per run (side by side)")
    p.add_argument("--epochs", type=int, default=0, help="fixed epoch count instead of the calibration")
    p.add_argument("--calib-steps", type=int, default=100,
                   help="steps of the calibration; its start-up is spread over them (30 steps measured 0.425 s per "
                        "step where the 75-epoch runs took 0.20)")  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=64, help="the preset's data.batch_size (for the calibration)"
    )
    p.add_argument("--eval-parallel", type=int, default=6, help="evaluation jobs at a time")
    p.add_argument(
        "--paper-recipe", nargs="*", default=[], help="arms also fine-tuned with the paper's recipe"
    )
    p.add_argument("--paper-epochs", type=int, default=30)
    p.add_argument("--ft-epochs", type=int, default=20, help="epochs of the small-data fine-tuning")
    p.add_argument("--ft-recipes", nargs="*", default=["mean"], choices=list(FT_RECIPES),
                   help="variants of the small-data fine-tuning (FT_RECIPES): mean pooling (the paper's), attentive, "
                        "...; the flag with no name: the frozen readouts only")  # fmt: skip
    p.add_argument("--labels", type=int, default=0,
                   help="evaluate with this many labelled training clips (class-balanced; default: all), into OUT/labelsN")  # fmt: skip
    p.add_argument("--stage2-epochs", type=int, default=0,
                   help="also the paper's two stages: an image MAE on sampled frames, then stage-2 arms from stage 1")  # fmt: skip
    p.add_argument(
        "--phases",
        nargs="+",
        default=["pretrain", "eval"],
        choices=["pretrain", "eval", "report"],
        help="report alone writes the table of whatever has finished",
    )
    p.add_argument("--extra", nargs="*", default=[], help="key=value overrides appended to every command")
    args = p.parse_args(argv)
    if args.stage2_epochs and "video_only" not in args.arms:
        p.error("--stage2-epochs needs the video_only arm (stage 1's video MAE)")
    t0 = time.time()
    study = Study(args)
    study.out.mkdir(parents=True, exist_ok=True)
    if args.phases != ["report"]:  # a report reads the runs' results only
        study.synth()
    epochs = study.epochs() if "pretrain" in args.phases else _recorded_epochs(study.out)
    if "pretrain" in args.phases:
        jobs, slots = study.pretrain_jobs(epochs)
        if args.stage2_epochs:  # stage 1: the arms (video_only among them) and the image MAE side by side
            slots += len(args.seeds)
            jobs += study.stage1_image_jobs(slots)
        study.run_all(jobs, slots)
        if args.stage2_epochs:
            study.stage2()
    if "eval" in args.phases:
        study.run_all(study.eval_jobs(), args.eval_parallel)
    study.report(epochs, time.time() - t0)


if __name__ == "__main__":
    main()
