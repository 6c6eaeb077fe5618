"""Output files written atomically, and input paths expanded into video lists.

Every writer goes through :func:`atomic_write`: the data lands in a hidden temp file next to the target, is
flushed to disk and then renamed over the target with ``os.replace`` (atomic on POSIX and Windows). A crash or
Ctrl-C therefore leaves either the old file or the new one, never half of one, and the temp file is removed.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import glob
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import OutputError, VideoError

PathLike = Union[str, os.PathLike]

# Extensions treated as videos when a directory is expanded (lower case, with the dot).
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .mpe .flv .wmv .3gp .3g2 .ts .mts .m2ts .ogv .vob .gif".split()
)
# Frame folders: images in one folder are one video's frames (hub3d.video reads them); optical flow as the
# two-stream originals store it may also sit in subfolder pairs (x/ y/, ...) of the video's folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
FLOW_SUBFOLDERS = (("x", "y"), ("u", "v"), ("flow_x", "flow_y"))
TMP_MARKER = ".tmp"


def temp_path_for(path: PathLike, suffix: str = "") -> Path:
    """A unique hidden sibling of ``path`` (same directory, so the final rename never crosses filesystems)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def current_umask() -> int:
    """The process umask, read without changing it where the OS tells (Linux), else set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(path: PathLike) -> None:
    """Give a file (0666) or directory (0777) the permissions the umask allows, as open() and mkdir() would:
    writers that make private temp files (tempfile.mkdtemp: 0700; some libraries: 0600) would otherwise leave
    a shared cache (HUB3D_HOME) readable by one user only."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(path: PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """A temp path for writers that take a file name: renamed over ``path`` on clean exit, else deleted.

    keep_suffix: end the temp name with path's extension too (PyAV picks the container format from it).
    """
    path = Path(path)
    tmp = temp_path_for(path, path.suffix if keep_suffix else "")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            if tmp.exists():
                default_mode(tmp)  # the user's umask, as for any file they write (temp files are 0600)
            os.replace(tmp, path)
        except OutputError:
            raise
        except OSError as e:  # name the real file, not the hidden temp one, and no chained traceback
            raise OutputError(path, e.strerror or str(e), e.errno or 0) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_writable(folder: PathLike) -> Path:
    """Make sure files can be created in ``folder`` (created if missing) before any compute; OutputError if not."""
    folder = Path(folder)
    probe = temp_path_for(folder / "probe")
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, os.strerror(errno.ENOTDIR), errno.ENOTDIR)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb"):
            pass
    except OSError as e:
        raise OutputError(folder, e.strerror or str(e), e.errno or 0) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", **open_kwargs) -> Iterator[Any]:
    """Open a temp file for writing; on clean exit it replaces ``path``, on any error (or Ctrl-C) it is deleted."""
    if "w" not in mode:
        raise ValueError(f"atomic_write needs a write mode, not {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return Path(path)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: PathLike, obj: Any, indent: Optional[int] = 2) -> Path:
    """JSON with numpy arrays/scalars and paths converted; NaN/inf are refused (they are not JSON)."""
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=False, ensure_ascii=False)
    return write_text(path, text + "\n")


def write_csv(
    path: PathLike, rows: Iterable[Mapping[str, Any]], fieldnames: Optional[Sequence[str]] = None
) -> Path:
    """CSV from dict rows; the columns are ``fieldnames`` or the keys of the first row."""
    rows = list(rows)
    if fieldnames is None:
        fieldnames = list(rows[0]) if rows else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def write_npy(path: PathLike, array: Any) -> Path:
    # np.save on a file object: given a name it would append ".npy" to the temp name.
    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return Path(path)


def write_npz(path: PathLike, compressed: bool = False, **arrays: Any) -> Path:
    save = np.savez_compressed if compressed else np.savez
    with atomic_write(path, "wb") as f:
        save(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


# ----------------------------------------------------------------------------------------------- inputs
def is_video_file(path: PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _read_list_file(path: Path) -> list[str]:
    """Paths listed one per line (blank lines and '#' comments skipped), relative ones to the list's folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read the list of videos ({e.strerror or e})") from None
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(os.path.expanduser(line))
            out.append(str(p if p.is_absolute() else path.parent / p))
    return out


def _is_frame_folder(folder: Path) -> bool:
    if any(f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() for f in folder.iterdir()):
        return True
    return any((folder / x).is_dir() and (folder / y).is_dir() for x, y in FLOW_SUBFOLDERS)


def frame_folders(root: Path) -> list[str]:
    """The frame folders at or below root, sorted: each folder holding images (or x/ y/ flow subfolders) is one
    video, and is not searched further (its x/ and y/ are its flow, not two more videos)."""
    if _is_frame_folder(root):
        return [str(root)]
    return [f for d in sorted(p for p in root.iterdir() if p.is_dir()) for f in frame_folders(d)]


def expand_video_paths(inputs: Iterable[PathLike], extensions=VIDEO_EXTENSIONS) -> list[str]:
    """Turn files, directories (searched recursively for video extensions; a tree without any: its frame folders,
    see :func:`frame_folders`), globs and list files into paths.

    A list file is given as ``@list.txt``: one path per line (a bare ``.txt`` file raises VideoError saying so). Order is kept (directories
    and globs sorted), duplicates dropped. A path that does not exist is kept as it is, so that the caller
    reports it with the other unreadable videos instead of silently skipping it; a glob or a directory that
    matches nothing raises ``FileNotFoundError``.
    """
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    for item in inputs:
        item = os.fspath(item)
        if item.startswith("@"):
            for p in _read_list_file(Path(item[1:])):
                add(p)
        elif item.lower().endswith(".txt") and os.path.isfile(item):
            raise VideoError(item, f"a text file, not a video; to read it as a list of videos, give @{item}")
        elif os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*") if p.suffix.lower() in extensions and p.is_file()
            ) or frame_folders(Path(item))
            if not found:
                raise FileNotFoundError(f"{item}: no video files or frame folders in this directory (looked for "
                                        f"{_ext_hint()}, or folders of {', '.join(IMAGE_EXTENSIONS)} images)")
            for p in found:
                add(p)
        elif glob.has_magic(item) and not os.path.exists(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f"{item}: the pattern matches no file")
            for p in found:
                add(p)
        else:
            add(item)
    return out


def _ext_hint() -> str:
    return ", ".join(sorted(VIDEO_EXTENSIONS)[:8]) + ", ..."


def output_names(videos: Sequence[PathLike], suffix: str, *, root: Optional[PathLike] = None,
                 taken: Optional[Mapping[str, str]] = None) -> list[str]:
    """Output file names for videos that do not depend on what else is in the list.

    The name is the video's stem (or, with ``root``, its path below root) with ``suffix``; a name that two
    videos would share, or that ``taken`` ({name: video}, outputs already on disk) gives another video, gets
    ``-`` and 8 hex digits of the SHA-1 of the video's absolute path before the suffix: the same for that video
    in every run. ``taken`` videos in the list keep their names.
    """
    taken = dict(taken or {})
    owned = {v: n for n, v in taken.items()}
    rootp = Path(os.path.abspath(root)) if root is not None else None
    base = []
    for v in videos:
        p = Path(os.path.abspath(v))
        if rootp is None:
            rel = Path(p.name)
        else:
            try:
                rel = p.relative_to(rootp)
            except ValueError:
                raise ValueError(f"{v}: not below --root {root}") from None
        base.append(str(rel.with_suffix(suffix)))
    counts: dict[str, int] = {}
    for v, n in zip(videos, base):
        if os.fspath(v) not in owned:
            counts[n] = counts.get(n, 0) + 1
    out = []
    for v, n in zip(videos, base):
        v = os.fspath(v)
        if v in owned:
            out.append(owned[v])
        elif counts[n] > 1 or n in taken:
            digest = hashlib.sha1(os.path.abspath(v).encode("utf-8", "surrogateescape")).hexdigest()[:8]
            out.append(n[: -len(suffix)] + f"-{digest}{suffix}")
        else:
            out.append(n)
    return out
