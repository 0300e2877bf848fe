"""Official dataset layouts -> ``path label`` list files + ``label_map.json`` (``crossvideomae prepare``).

Each preparer reads the annotation files as they are distributed and finds the videos on disk; it writes
into ``out_dir``:

- ``train.txt`` / ``val.txt`` (and ``test.txt`` where the official test split has labels), paths relative to
  ``out_dir`` (the list readers resolve them against the list's folder, so ``out_dir`` can sit anywhere);
- for UCF101 / HMDB51 every official split as ``train_split{k}.txt`` / ``val_split{k}.txt`` (use
  ``data.train_list=.../train_split{split}.txt`` with ``eval.split``); ``train.txt`` / ``val.txt`` are split
  ``split``;
- ``label_map.json``: ``{"classes": [name of label 0, name of label 1, ...]}``;
- ``missing.txt``: annotated videos not found on disk (Kinetics always has some: YouTube deletions).

Layouts (as distributed):

- kinetics: ``train.csv``, ``validate.csv`` (or ``val.csv``), ``test.csv`` with the header
  ``label,youtube_id,time_start,time_end,split[,is_cc]``, in ``ROOT`` or ``ROOT/annotations``; videos anywhere
  under ``ROOT`` named ``{youtube_id}_{time_start:06d}_{time_end:06d}.{ext}`` (the downloaders' names) or
  ``{youtube_id}.{ext}``. Class ids: class names sorted, as in the VideoMAE / SlowFast lists.
- ssv2: ``labels.json`` (template -> id), ``train.json`` / ``validation.json`` (``[{"id", "label",
  "template", "placeholders"}]``), also under their ``something-something-v2-*.json`` names; videos
  ``{id}.webm`` anywhere under ``ROOT``. The class is the template without its brackets.
- ucf101: ``ucfTrainTestlist/classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0{1,2,3}.txt``
  (``Class/v_Class_g08_c01.avi 1``), ``testlist0{1,2,3}.txt`` (``Class/v_Class_g01_c01.avi``); videos in
  ``ROOT/UCF-101/`` (or ``ROOT/UCF101/``, ``ROOT/``). Label = classInd id - 1; file names are matched
  case-insensitively because the official lists and archive disagree on a few (``HandStandPushups``).
- hmdb51: ``testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`` with ``<video>.avi <flag>`` lines,
  flag 1 = train, 2 = test, 0 = unused; videos in ``ROOT/hmdb51_org/<class>/`` (or ``ROOT/<class>/``).
- folder: class-per-folder trees ``ROOT/train/<class>/...`` and ``ROOT/val/<class>/...`` (``test/`` too), or a
  single tree ``ROOT/<class>/...`` that becomes ``train.txt`` (plus ``val.txt`` when ``val_fraction`` > 0,
  chosen by a hash of the path, so it is stable).
"""

from __future__ import annotations

import csv
import json
import os
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

from .lists import VIDEO_EXTS, ListError, folder_classes

FORMATS = ("kinetics", "ssv2", "ucf101", "hmdb51", "folder")


def _video_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTS and p.is_file())


def _find(root: Path, names: Iterable[str], what: str) -> Path:
    """First existing file among ``names`` directly in ``root`` or anywhere below it."""
    names = list(names)
    for name in names:
        if (root / name).is_file():
            return root / name
    for name in names:
        hits = sorted(root.rglob(name))
        if hits:
            return hits[0]
    raise ListError(f"{what} not found under {root} (looked for {', '.join(names)})")


def _write(out_dir: Path, name: str, rows: list[tuple[Path, int]]) -> str:
    path = out_dir / f"{name}.txt"
    path.write_text("".join(f"{os.path.relpath(p, out_dir)} {label}\n" for p, label in rows))
    return str(path)


def _finish(
    out_dir: Path, classes: list[str], splits: dict[str, list[tuple[Path, int]]], missing: list[str]
) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "label_map.json").write_text(json.dumps({"classes": classes}, indent=2))
    (out_dir / "missing.txt").write_text("".join(m + "\n" for m in missing))
    summary: dict = {"classes": len(classes), "missing": len(missing), "output_dir": str(out_dir)}
    for name, rows in splits.items():
        summary[f"{name}_list"] = _write(out_dir, name, rows)
        summary[f"num_{name}"] = len(rows)
    return summary


# ------------------------------------------------------------------------------------------------ Kinetics
def prepare_kinetics(root: Path, out_dir: Path) -> dict:
    ann = {}
    for split, names in (
        ("train", ["train.csv"]),
        ("val", ["validate.csv", "val.csv"]),
        ("test", ["test.csv"]),
    ):
        try:
            ann[split] = _find(root, names, f"Kinetics {split} CSV")
        except ListError:
            if split == "train":
                raise
    rows = {}
    for split, path in ann.items():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            need = {"youtube_id", "time_start", "time_end"}
            if reader.fieldnames is None or need - set(reader.fieldnames):
                raise ListError(f"{path}: expected the header label,youtube_id,time_start,time_end,split")
            rows[split] = list(reader)
    classes = sorted({r["label"] for r in rows["train"]})
    ids = {c: i for i, c in enumerate(classes)}
    by_stem = {p.stem: p for p in _video_files(root)}
    splits, missing = {}, []
    for split, items in rows.items():
        out = []
        for r in items:
            if "label" not in r or r["label"] not in ids:
                continue  # the unlabelled test split of early releases
            stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
            path = by_stem.get(stem) or by_stem.get(r["youtube_id"])
            if path is None:
                missing.append(f"{split}: {stem}")
                continue
            out.append((path, ids[r["label"]]))
        if out or split != "test":
            splits[split] = out
    return _finish(out_dir, classes, splits, missing)


# ------------------------------------------------------------------------------------------------ SSv2
def prepare_ssv2(root: Path, out_dir: Path) -> dict:
    labels = json.loads(
        _find(root, ["labels.json", "something-something-v2-labels.json"], "SSv2 labels.json").read_text()
    )
    classes = [name for name, _ in sorted(labels.items(), key=lambda kv: int(kv[1]))]
    by_stem = {p.stem: p for p in _video_files(root)}
    splits, missing = {}, []
    for split, names in (
        ("train", ["train.json", "something-something-v2-train.json"]),
        ("val", ["validation.json", "something-something-v2-validation.json"]),
    ):
        out = []
        for item in json.loads(_find(root, names, f"SSv2 {split} JSON").read_text()):
            name = item["template"].replace("[", "").replace("]", "")
            if name not in labels:
                raise ListError(
                    f"SSv2 {split}: template {item['template']!r} of video {item['id']} is not in labels.json"
                )
            path = by_stem.get(str(item["id"]))
            if path is None:
                missing.append(f"{split}: {item['id']}")
                continue
            out.append((path, int(labels[name])))
        splits[split] = out
    return _finish(out_dir, classes, splits, missing)


# ------------------------------------------------------------------------------------------------ UCF101
def _video_dir(root: Path, candidates: list[str]) -> Path:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    return root


def prepare_ucf101(root: Path, out_dir: Path, split: int = 1) -> dict:
    class_ind = _find(root, ["classInd.txt"], "UCF101 classInd.txt")
    lists = class_ind.parent
    classes, ids = [], {}
    for line in class_ind.read_text().split("\n"):
        if line.strip():
            num, name = line.split()
            ids[name.lower()] = int(num) - 1
            classes.append(name)
    videos = _video_dir(root, ["UCF-101", "UCF101"])
    by_rel = {str(p.relative_to(videos)).replace(os.sep, "/").lower(): p for p in _video_files(videos)}
    splits, missing = {}, []
    for k in (1, 2, 3):
        for name, file in (("train", f"trainlist0{k}.txt"), ("val", f"testlist0{k}.txt")):
            if not (lists / file).is_file():
                continue
            out = []
            for line in (lists / file).read_text().split("\n"):
                if not line.strip():
                    continue
                rel = line.split()[0]
                path = by_rel.get(rel.lower())
                if path is None:
                    missing.append(f"{file}: {rel}")
                    continue
                out.append((path, ids[rel.split("/")[0].lower()]))
            splits[f"{name}_split{k}"] = out
    return _finish(out_dir, classes, _with_default_split(splits, split), missing)


def _with_default_split(splits: dict, split: int) -> dict:
    if f"train_split{split}" not in splits:
        raise ListError(f"split {split} not found (have: {', '.join(sorted(splits)) or 'none'})")
    return {"train": splits[f"train_split{split}"], "val": splits.get(f"val_split{split}", []), **splits}


# ------------------------------------------------------------------------------------------------ HMDB51
_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<k>[123])\.txt$")


def prepare_hmdb51(root: Path, out_dir: Path, split: int = 1) -> dict:
    files = sorted(p for p in root.rglob("*_test_split*.txt") if _HMDB_SPLIT.match(p.name))
    if not files:
        raise ListError(f"HMDB51 split files (<class>_test_split1.txt ...) not found under {root}")
    classes = sorted({_HMDB_SPLIT.match(p.name)["cls"] for p in files})
    ids = {c: i for i, c in enumerate(classes)}
    videos = _video_dir(root, ["hmdb51_org", "hmdb51", "HMDB51"])
    by_name = {p.name: p for p in _video_files(videos)}
    splits: dict[str, list] = {}
    missing = []
    for p in files:
        m = _HMDB_SPLIT.match(p.name)
        for line in p.read_text().split("\n"):
            parts = line.split()
            if len(parts) != 2 or parts[1] == "0":
                continue  # flag 0: not used in this split
            name = "train" if parts[1] == "1" else "val"
            path = by_name.get(parts[0])
            if path is None:
                missing.append(f"{p.name}: {parts[0]}")
                continue
            splits.setdefault(f"{name}_split{m['k']}", []).append((path, ids[m["cls"]]))
    return _finish(out_dir, classes, _with_default_split(splits, split), missing)


# ------------------------------------------------------------------------------------------------ folder
def prepare_folder(root: Path, out_dir: Path, val_fraction: float = 0.0) -> dict:
    split_dirs = {
        name: root / sub
        for name, sub in (("train", "train"), ("val", "val"), ("test", "test"))
        if (root / sub).is_dir()
    }
    if "val" not in split_dirs and (root / "validation").is_dir():
        split_dirs["val"] = root / "validation"
    if "train" in split_dirs:
        classes = sorted({c for d in split_dirs.values() for c in folder_classes(d)})
        trees = split_dirs
    else:
        classes, trees = folder_classes(root), {"train": root}
    if not classes:
        raise ListError(f"{root}: no class folders found")
    ids = {c: i for i, c in enumerate(classes)}
    splits: dict[str, list] = {name: [] for name in trees}
    for name, tree in trees.items():
        for c in folder_classes(tree):
            for p in _video_files(tree / c):
                splits[name].append((p, ids[c]))
    if "val" not in splits and val_fraction > 0:
        rows = splits["train"]
        held = {
            p
            for p, _ in rows
            if zlib.crc32(str(p.relative_to(root)).encode()) % 10_000 < val_fraction * 10_000
        }
        splits = {"train": [r for r in rows if r[0] not in held], "val": [r for r in rows if r[0] in held]}
    if not splits["train"]:
        raise ListError(f"{root}: no videos ({', '.join(VIDEO_EXTS)}) in the class folders")
    return _finish(out_dir, classes, splits, [])


def prepare(
    fmt: str, root: str | Path, out_dir: str | Path, split: int = 1, val_fraction: float = 0.0
) -> dict:
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise ListError(f"dataset folder not found: {root}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "kinetics":
        return prepare_kinetics(root, out_dir)
    if fmt == "ssv2":
        return prepare_ssv2(root, out_dir)
    if fmt == "ucf101":
        return prepare_ucf101(root, out_dir, split)
    if fmt == "hmdb51":
        return prepare_hmdb51(root, out_dir, split)
    if fmt == "folder":
        return prepare_folder(root, out_dir, val_fraction)
    raise ListError(f"unknown dataset format {fmt!r} ({' | '.join(FORMATS)})")
