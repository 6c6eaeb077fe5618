"""Pictures of results: a classification timeline per video, a similarity map of clip features.

matplotlib is an optional extra (``pip install 'hub3d[plot]'``), imported only here and only when a plot is made;
no pyplot (no GUI backend, no global state): a Figure drawn on the Agg canvas, written atomically as PNG, SVG or
PDF (the file name's extension).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from .errors import MissingExtraError

PathLike = Union[str, os.PathLike]
FORMATS = (".png", ".svg", ".pdf")


def _figure(size):
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtraError("plot", "plots (matplotlib)", str(e)) from e
    return Figure(figsize=size, dpi=100, layout="constrained")


def _save(fig, path: PathLike) -> Path:
    from .io import atomic_path

    path = Path(path)
    fmt = path.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: plots are written as {', '.join(FORMATS)}; use one of these extensions")
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, format=fmt[1:])
    return path


def _short(name: str, n: int = 28) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def plot_timeline(result, path: PathLike, k: int = 5) -> Path:
    """The video-level top-``k`` classes' probability in each clip over the video's seconds (one step line per
    class, a clip's value held over its [start, end) seconds); the title gives the video-level top-k."""
    top = result.topk[:k]
    seconds = np.asarray(result.clip_seconds, dtype=np.float64)
    fig = _figure((8, 3.6))
    ax = fig.add_subplot()
    # Step over clip starts, then the last clip's end, so each clip spans its own seconds.
    x = np.append(seconds[:, 0], seconds[-1, 1])
    for label, index, _ in top:
        p = result.clip_probs[:, index]
        ax.step(x, np.append(p, p[-1]), where="post", linewidth=2, label=_short(label))
    ax.set_xlim(x[0], x[-1] if x[-1] > x[0] else x[0] + 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("seconds")
    ax.set_ylabel("probability (clip)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    summary = ", ".join(f"{_short(label, 20)} {prob:.2f}" for label, _, prob in top[:3])
    ax.set_title(f"{_short(Path(result.video).name, 40)}: {summary}", fontsize="medium", loc="left")
    return _save(fig, path)


def cosine_similarity(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = f / np.where(norms > 0, norms, 1.0)
    return f @ f.T


def pca_2d(features: np.ndarray) -> np.ndarray:
    """(n, D) -> (n, 2): the first two principal components (numpy SVD of the centred rows)."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0)
    if len(f) < 2:
        return np.zeros((len(f), 2))
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    out = u[:, :2] * s[:2]
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def plot_similarity(result, path: PathLike) -> Path:
    """Cosine similarity of every pair of clips (scene changes show as blocks) beside a 2-D PCA of the clip
    features coloured by time (one clip per point, joined in order)."""
    feats = np.asarray(result.features)
    starts = np.asarray(result.clip_seconds)[:, 0]
    sim = cosine_similarity(feats)
    fig = _figure((9, 4))
    ax, ax2 = fig.subplots(1, 2, width_ratios=(1, 1))
    end = float(np.asarray(result.clip_seconds)[-1, 1])
    image = ax.imshow(sim, vmin=-1, vmax=1, cmap="viridis", extent=(0, end, end, 0), interpolation="nearest")
    ax.set_xlabel("seconds")
    ax.set_ylabel("seconds")
    ax.set_title("cosine similarity of clips", fontsize="medium")
    fig.colorbar(image, ax=ax, shrink=0.85)
    xy = pca_2d(feats)
    ax2.plot(xy[:, 0], xy[:, 1], color="0.7", linewidth=1, zorder=1)
    points = ax2.scatter(xy[:, 0], xy[:, 1], c=starts, cmap="plasma", s=30, zorder=2)
    fig.colorbar(points, ax=ax2, shrink=0.85, label="clip start (s)")
    ax2.set_title("clip features, PCA", fontsize="medium")
    ax2.set_xlabel("PC 1")
    ax2.set_ylabel("PC 2")
    fig.suptitle(f"{_short(Path(result.video).name, 50)} ({result.n_clips} clips)", fontsize="medium")
    return _save(fig, path)


def plot_path(path: PathLike, video: str, videos: list) -> Path:
    """Where one video's plot goes: ``path`` itself for a single video, else ``path``'s stem + the video's name."""
    from .io import output_names

    path = Path(path)
    if len(videos) <= 1:
        return path
    name = dict(zip(videos, output_names(videos, path.suffix)))[video]
    return path.with_name(f"{path.stem}-{name.replace(os.sep, '-')}")


__all__ = ["cosine_similarity", "pca_2d", "plot_path", "plot_similarity", "plot_timeline"]
