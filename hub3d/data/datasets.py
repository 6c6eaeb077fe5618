"""Video datasets in the common layouts, all read straight from the videos with PyAV (frame folders work too).

Every dataset is a list of (path, label) ``samples`` plus an explicit ``classes`` list (index order: it is
saved with the trained model). Items are ``(frames (T, H, W, 3) uint8, label)``; an unreadable video raises
hub3d.video.VideoError naming the file (the trainer logs and skips it).

Layouts:
- VideoFolder: root/<class>/<video file or frame folder>.
- KineticsCsv: the official annotation CSV (label, youtube_id, time_start, time_end, split), files named
  <youtube_id>_<start:06d>_<end:06d>.<ext> in root/<label>/ or directly in root.
- UCF101: classInd.txt + trainlist0N.txt / testlist0N.txt; videos in root/<Class>/v_<Class>_gXX_cXX.avi.
- HMDB51: <class>_test_split<N>.txt files (1 = train, 2 = test, 0 = unused); videos in root/<class>/.
- CsvDataset: a CSV of path,label (header optional; relative paths are relative to the CSV).
"""
from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..io import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]


def load_frames(path: PathLike) -> np.ndarray:
    """Every frame of a video file or frame folder, (T, H, W, 3) uint8 (hub3d.video.read_frames)."""
    from ..video import read_frames

    return read_frames(path)


def read_classes(path: PathLike) -> list[str]:
    """A class list file: one name per line, index order (blank lines ignored)."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise ValueError(f"{path}: cannot read the class list ({e.strerror})") from None
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: class names repeat")
    if not names:
        raise ValueError(f"{path}: no class names")
    return names


def _class_index(classes: Sequence[str], where: str):
    index = {c: i for i, c in enumerate(classes)}

    def lookup(name: str) -> int:
        if name not in index:
            raise ValueError(f"{where}: label {name!r} is not among the {len(classes)} given classes")
        return index[name]

    return lookup


class VideoDataset:
    """Base: ``samples`` [(path, label)], ``classes``; item i -> (frames or transform(frames), label)."""

    hflip_classes: Optional[dict] = None  # class -> class under a left-right flip; None: flips keep labels

    def __init__(self, samples: Sequence[tuple], classes: Sequence[str], transform: Optional[Callable] = None):
        self.samples = [(str(p), int(y)) for p, y in samples]
        self.classes = list(classes)
        self.transform = transform
        for p, y in self.samples:
            if not 0 <= y < len(self.classes):
                raise ValueError(f"{p}: label index {y} outside the {len(self.classes)} classes")

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [y for _, y in self.samples]

    def label(self, index: int) -> int:
        return self.samples[index][1]

    def video(self, index: int) -> np.ndarray:
        return load_frames(self.samples[index][0])

    def name(self, index: int) -> str:
        return self.samples[index][0]

    def __getitem__(self, index: int):
        frames = self.video(index)
        return (self.transform(frames) if self.transform else frames), self.label(index)

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} videos, {len(self.classes)} classes)"


def _is_video_entry(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS


class VideoFolder(VideoDataset):
    """root/<class>/<video>: classes are the sub-folder names, sorted, unless given (explicit order)."""

    def __init__(self, root: PathLike, classes: Optional[Sequence[str]] = None, transform=None):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root}: not a directory")
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise ValueError(f"{root}: no class sub-folders (expected root/<class>/<video>)")
        classes = list(classes) if classes is not None else found
        missing = sorted(set(found) - set(classes))
        if missing:
            raise ValueError(f"{root}: sub-folders {missing} are not among the given classes")
        samples = []
        for label, name in enumerate(classes):
            folder = root / name
            if folder.is_dir():
                samples += [(p, label) for p in sorted(folder.iterdir())
                            if not p.name.startswith(".") and _is_video_entry(p)]
        if not samples:
            raise ValueError(f"{root}: no videos in its class sub-folders")
        super().__init__(samples, classes, transform)
        self.root = root


class CsvDataset(VideoDataset):
    """A CSV of path,label rows (an optional header row 'path,label'); labels are class names."""

    def __init__(self, csv_path: PathLike, classes: Optional[Sequence[str]] = None, transform=None):
        csv_path = Path(csv_path)
        rows = _read_csv_rows(csv_path)
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
            rows = rows[1:]
        pairs = []
        for n, row in enumerate(rows, start=1):
            if len(row) < 2 or not row[0].strip():
                raise ValueError(f"{csv_path}: row {n} is not 'path,label': {row}")
            path = Path(row[0].strip())
            pairs.append((path if path.is_absolute() else csv_path.parent / path, row[1].strip()))
        if not pairs:
            raise ValueError(f"{csv_path}: no rows")
        classes = list(classes) if classes is not None else sorted({y for _, y in pairs})
        lookup = _class_index(classes, str(csv_path))
        super().__init__([(p, lookup(y)) for p, y in pairs], classes, transform)


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None


KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def kinetics_file_stem(youtube_id: str, start: Union[int, float], end: Union[int, float]) -> str:
    """The usual Kinetics file name (the ActivityNet crawler's): <id>_<start:06d>_<end:06d>."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


class KineticsCsv(VideoDataset):
    """Kinetics annotations (train.csv / validate.csv); videos that are missing are logged and left out.

    classes: default the sorted label names of the CSV (Kinetics' official order is alphabetical).
    split: keep rows whose 'split' column equals it (None: every row).
    """

    def __init__(self, csv_path: PathLike, root: PathLike, classes: Optional[Sequence[str]] = None,
                 split: Optional[str] = None, transform=None):
        csv_path, root = Path(csv_path), Path(root)
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing_cols = [c for c in KINETICS_COLUMNS[:4] if c not in (reader.fieldnames or [])]
            if missing_cols:
                raise ValueError(f"{csv_path}: not a Kinetics CSV, missing columns {missing_cols}")
            rows = [r for r in reader if split is None or r.get("split") == split]
        if not rows:
            raise ValueError(f"{csv_path}: no rows" + (f" with split {split!r}" if split else ""))
        classes = list(classes) if classes is not None else sorted({r["label"] for r in rows})
        lookup = _class_index(classes, str(csv_path))
        index = _index_videos(root)
        samples, absent = [], 0
        for r in rows:
            stem = kinetics_file_stem(r["youtube_id"], r["time_start"], r["time_end"])
            path = index.get((r["label"], stem)) or index.get((None, stem))
            if path is None:
                absent += 1
                continue
            samples.append((path, lookup(r["label"])))
        if absent:
            log.warning("%s: %d of %d videos not found under %s (left out)", csv_path, absent, len(rows), root)
        if not samples:
            raise ValueError(f"{csv_path}: none of its {len(rows)} videos is under {root}")
        super().__init__(samples, classes, transform)


def _index_videos(root: Path) -> dict:
    """(class folder or None, file stem) -> path, for root/<class>/<file> and root/<file>."""
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    index = {}
    for entry in root.iterdir():
        if entry.is_dir():
            for p in entry.iterdir():
                if _is_video_entry(p):
                    index[(entry.name, p.stem)] = p
                    index.setdefault((None, p.stem), p)
        elif _is_video_entry(entry):
            index[(None, entry.stem)] = entry
    return index


def _resolve(root: Path, rel: str, where: str) -> Path:
    path = root / rel
    if not path.exists():
        log.warning("%s: %s not found (left out)", where, path)
    return path


class UCF101(VideoDataset):
    """UCF-101 with its official split files (ucfTrainTestlist/): classInd.txt, trainlist0N.txt, testlist0N.txt."""

    def __init__(self, root: PathLike, annotations: PathLike, split: int = 1, train: bool = True, transform=None):
        root, ann = Path(root), Path(annotations)
        class_rows = [line.split() for line in (ann / "classInd.txt").read_text().splitlines() if line.strip()]
        try:
            order = sorted(class_rows, key=lambda r: int(r[0]))
            classes = [r[1] for r in order]
        except (IndexError, ValueError):
            raise ValueError(f"{ann / 'classInd.txt'}: expected lines '<index> <ClassName>'") from None
        lookup = _class_index(classes, str(ann / "classInd.txt"))
        list_file = ann / f"{'trainlist' if train else 'testlist'}{split:02d}.txt"
        if not list_file.exists():
            raise ValueError(f"{list_file}: no such split file")
        samples = []
        for n, line in enumerate(list_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            rel = line.split()[0]
            if "/" not in rel:
                raise ValueError(f"{list_file}: line {n}: expected '<Class>/<video>', got {rel!r}")
            path = _resolve(root, rel, str(list_file))
            if path.exists():
                samples.append((path, lookup(rel.split("/")[0])))
        if not samples:
            raise ValueError(f"{list_file}: none of its videos is under {root}")
        super().__init__(samples, classes, transform)


class HMDB51(VideoDataset):
    """HMDB-51 with its split files <class>_test_split<N>.txt ('<video> 1|2|0': train | test | unused)."""

    def __init__(self, root: PathLike, annotations: PathLike, split: int = 1, train: bool = True, transform=None):
        root, ann = Path(root), Path(annotations)
        suffix = f"_test_split{split}.txt"
        files = sorted(ann.glob(f"*{suffix}"))
        if not files:
            raise ValueError(f"{ann}: no '*{suffix}' split files")
        classes = [f.name[: -len(suffix)] for f in files]
        wanted = "1" if train else "2"
        samples = []
        for label, f in enumerate(files):
            for n, line in enumerate(f.read_text().splitlines(), start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise ValueError(f"{f}: line {n}: expected '<video> 0|1|2', got {line!r}")
                if parts[1] == wanted:
                    path = _resolve(root / classes[label], parts[0], str(f))
                    if path.exists():
                        samples.append((path, label))
        if not samples:
            raise ValueError(f"{ann}: no {'train' if train else 'test'} video of split {split} under {root}")
        super().__init__(samples, classes, transform)


def build_dataset(
    data: str,
    train: bool = True,
    fmt: str = "auto",
    annotations: Optional[PathLike] = None,
    video_root: Optional[PathLike] = None,
    split: int = 1,
    classes: Optional[Sequence[str]] = None,
    synthetic_videos: int = 0,
    synthetic_frames: int = 32,
    synthetic_size: int = 64,
    seed: int = 0,
):
    """The dataset a command line names: 'synthetic', a folder, or a CSV (see hub3d train --help).

    fmt: auto | folder | csv | kinetics | ucf101 | hmdb51. A folder with train/ and val/ sub-folders is split by
    them. annotations: the UCF-101 / HMDB-51 split-file folder; video_root: where a Kinetics CSV's videos are
    (default: the CSV's folder). Synthetic: synthetic_videos videos; validation uses another seed (seed + 1_000_003).
    """
    from .synthetic import SyntheticMotion

    if data == "synthetic":
        return SyntheticMotion(synthetic_videos, seed=seed if train else seed + 1_000_003,
                               num_frames=synthetic_frames, size=synthetic_size)
    path = Path(data)
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory (--data takes 'synthetic', a folder or a CSV)")
    if fmt == "auto":
        if path.is_dir():
            fmt = "ucf101" if annotations and Path(annotations, "classInd.txt").exists() else (
                "hmdb51" if annotations else "folder")
        else:
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            fmt = "kinetics" if all(c in header for c in KINETICS_COLUMNS[:4]) else "csv"
    if fmt == "folder":
        sub = path / ("train" if train else "val")
        if (path / "train").is_dir() and (path / "val").is_dir():
            return VideoFolder(sub, classes=classes or sorted(p.name for p in (path / "train").iterdir() if p.is_dir()))
        return VideoFolder(path, classes=classes)
    if fmt == "csv":
        return CsvDataset(path, classes=classes)
    if fmt == "kinetics":
        return KineticsCsv(path, video_root or path.parent, classes=classes)
    if fmt in ("ucf101", "hmdb51"):
        if annotations is None:
            raise ValueError(f"--format {fmt} needs --annotations DIR (the split files)")
        cls = UCF101 if fmt == "ucf101" else HMDB51
        return cls(path, annotations, split=split, train=train)
    raise ValueError(f"unknown dataset format {fmt!r}: auto, folder, csv, kinetics, ucf101 or hmdb51")
