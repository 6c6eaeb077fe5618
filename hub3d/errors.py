"""Every error hub3d raises on purpose: one base, :class:`Hub3dError`, so ``except hub3d.Hub3dError`` catches them.

Each keeps the built-in base it had before this module existed (``ValueError``, ``FileNotFoundError``,
``OSError``), so code written as ``except ValueError`` keeps working. Pure Python: importing it costs nothing.
"""
from __future__ import annotations


class Hub3dError(Exception):
    """Base of every hub3d error; the message names the file (or name) and the problem."""


class ConfigError(Hub3dError, ValueError):
    """A configuration that cannot be used: unknown fields, values out of range, names that do not agree."""


class VideoError(Hub3dError):
    """A video that cannot be read; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable (DataLoader workers, multiprocessing) despite the two-argument __init__
        return type(self), (self.path, self.reason)


class CheckpointError(Hub3dError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names file and problem."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint that holds more than tensors and plain data: loading it would run code."""


class WeightsNotFoundError(Hub3dError, FileNotFoundError):
    """No source has the weights; the message says which sources were tried and how to finish the job."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise print the tuple of its args
        return self.args[0] if self.args else ""


class ChecksumError(Hub3dError, ValueError):
    """A file's content differs from its known hash; the file is never loaded or kept as if good."""


class DownloadError(Hub3dError, OSError):
    """A download failed (network, HTTP error, truncated); a partial file is kept to resume from."""


class IncompleteError(Hub3dError, RuntimeError):
    """A dataset's index asked for before every planned video was tried; ``missing`` maps video -> why."""

    def __init__(self, out_dir, missing: dict):
        self.out_dir = str(out_dir)
        self.missing = dict(missing)
        shown = "\n".join(f"  {v}: {why}" for v, why in list(self.missing.items())[:20])
        more = f"\n  ... and {len(self.missing) - 20} more" if len(self.missing) > 20 else ""
        super().__init__(f"{self.out_dir}: {len(self.missing)} video(s) not done yet, no index written:\n{shown}{more}")

    def __reduce__(self):
        return type(self), (self.out_dir, self.missing)
class OutputError(Hub3dError, OSError):
    """An output that cannot be written (read-only folder, disk full, ...); names the real path, not a temp file."""

    def __init__(self, path, reason: str, errno_: int = 0):
        self.path = str(path)
        self.reason = reason
        super().__init__(errno_, f"{self.path}: cannot write ({reason})")

    def __str__(self) -> str:
        return self.args[1]

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.errno)
class MissingExtraError(Hub3dError, ImportError):
    """An optional feature whose packages are not installed; the message names the pip extra that installs them."""

    def __init__(self, extra: str, what: str, cause: str = ""):
        self.extra, self.what, self.cause = extra, what, cause
        because = f" ({cause})" if cause else ""
        super().__init__(f"{what} needs the optional extra {extra!r}: pip install 'hub3d[{extra}]'{because}")

    def __reduce__(self):
        return type(self), (self.extra, self.what, self.cause)


class ExportError(Hub3dError, RuntimeError):
    """A model that cannot be exported in the asked format (the message says why), or an unusable exported file."""


__all__ = [
    "Hub3dError",
    "ConfigError",
    "VideoError",
    "CheckpointError",
    "UnsafeCheckpointError",
    "WeightsNotFoundError",
    "ChecksumError",
    "DownloadError",
    "IncompleteError",
    "OutputError",
    "ExportError",
    "MissingExtraError",
]
