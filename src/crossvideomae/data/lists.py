"""Video lists: ``path label`` files, class-per-folder trees and the pre-sampled frame index.

List files follow VideoMAE / SpatioTemporalMAE: one ``path label`` per line (the label is the last
whitespace-separated field, so paths may contain spaces; blank lines and ``#`` comments are skipped).
A relative path is resolved against ``data.root`` when it is set, else against the folder of the list file,
so a dataset folder with its lists inside can be moved as a whole. Optional sidecars beside ``NAME.txt``:

- ``NAME_kinds.txt``: ``path kind`` lines, the synthetic object-kind label (kind = -1 where absent);
- ``label_map.json``: ``{"classes": [...]}`` gives the class count (else max label + 1); a label outside it
  (or below 0) is an error naming the line.

A line whose file does not exist is an error naming the list file and line number; catching it at load
time is cheaper than a worker crash an hour in.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ListError(ValueError):
    """A list file or dataset folder is malformed; the message names the file (and line)."""


@dataclass
class VideoRecord:
    path: str
    label: int
    kind: int = -1


@dataclass
class FrameRecord:
    """One pre-sampled frame: the video it came from and where (``crossvideomae sample-frames``)."""

    video: str
    label: int
    frame_index: int
    timestamp: float
    image: str


def _resolve(path: str, base: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else base / p)


def read_list(list_path: str | Path, root: str = "", check_files: bool = True) -> list[VideoRecord]:
    """Records of a ``path label`` list file, or of a class-per-folder tree when ``list_path`` is a folder."""
    list_path = Path(list_path)
    if list_path.is_dir():
        return read_folder(list_path)
    if not list_path.is_file():
        raise ListError(f"list file not found: {list_path}")
    base = Path(root) if root else list_path.parent
    kinds = _read_kinds(list_path.with_name(list_path.stem + "_kinds.txt"))
    classes = _label_map_size(list_path)
    records = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ListError(f"{list_path}:{lineno}: expected 'path label', got {line!r}")
        label = int(parts[1])
        if label < 0 or (classes is not None and label >= classes):
            known = (
                f"0 to {classes - 1}, as {list_path.parent / 'label_map.json'} lists {classes}"
                if classes
                else ">= 0"
            )
            raise ListError(f"{list_path}:{lineno}: label {label} is not a class index ({known})")
        path = _resolve(parts[0], base)
        if check_files and not Path(path).is_file():
            raise ListError(f"{list_path}:{lineno}: video file not found: {path}")
        records.append(VideoRecord(path, label, kinds.get(parts[0], -1)))
    if not records:
        raise ListError(f"{list_path}: no videos listed")
    return records


def _read_kinds(path: Path) -> dict[str, int]:
    if not path.is_file():
        return {}
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.rsplit(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ListError(f"{path}:{lineno}: expected 'path kind', got {line.strip()!r}")
        out[parts[0]] = int(parts[1])
    return out


def folder_classes(root: Path) -> list[str]:
    """Sorted class folder names of a class-per-folder tree."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def read_folder(root: str | Path) -> list[VideoRecord]:
    """``root/<class>/**/<video>``: label = index of the class in sorted order."""
    root = Path(root)
    classes = folder_classes(root)
    records = [
        VideoRecord(str(f), label)
        for label, name in enumerate(classes)
        for f in sorted((root / name).rglob("*"))
        if f.suffix.lower() in VIDEO_EXTS and f.is_file()
    ]
    if not records:
        raise ListError(f"{root}: no videos found in class folders (extensions {', '.join(VIDEO_EXTS)})")
    return records


def num_classes(list_path: str | Path, records: list[VideoRecord]) -> int:
    """From ``label_map.json`` beside the list when present, else max label + 1."""
    list_path = Path(list_path)
    if list_path.is_dir():
        return len(folder_classes(list_path))
    return _label_map_size(list_path) or max(r.label for r in records) + 1


def _label_map_size(list_path: Path) -> int | None:
    """The class count of ``label_map.json`` beside a list file, None without one."""
    label_map = list_path.parent / "label_map.json"
    if not label_map.is_file():
        return None
    try:
        classes = json.loads(label_map.read_text()).get("classes")
    except (ValueError, AttributeError):
        raise ListError(f'{label_map}: expected JSON like {{"classes": [...]}}') from None
    return len(classes) if classes else None


INDEX_FIELDS = ("video", "label", "frame_index", "timestamp", "image")


def read_frame_index(index_path: str | Path) -> list[FrameRecord]:
    """The CSV index of a pre-sampled frame dataset; relative paths are relative to the index's folder."""
    index_path = Path(index_path)
    if not index_path.is_file():
        raise ListError(f"pre-sampled frame index not found: {index_path}")
    base = index_path.parent
    with index_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or set(INDEX_FIELDS) - set(reader.fieldnames):
            raise ListError(f"{index_path}: expected CSV columns {', '.join(INDEX_FIELDS)}")
        rows = [
            FrameRecord(
                _resolve(r["video"], base),
                int(r["label"]),
                int(r["frame_index"]),
                float(r["timestamp"]),
                _resolve(r["image"], base),
            )
            for r in reader
        ]
    if not rows:
        raise ListError(f"{index_path}: no frames listed")
    return rows


def list_images(folder: str | Path) -> list[str]:
    """All image files under ``folder`` (the ``data.image_source`` option), sorted."""
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ListError(f"data.image_source: no images ({', '.join(IMAGE_EXTS)}) under {folder}")
    return files
