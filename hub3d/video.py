"""Video files <-> frames, with PyAV (FFmpeg in-process: no temp files, no ffmpeg binary).

Reading is streaming: `iter_frames` decodes one frame at a time, so memory is bounded whatever the video
length. A *source* is a video file FFmpeg can decode or a directory of JPEG/PNG frames (sorted naturally).
A directory of optical-flow frames as the two-stream originals store them (grayscale x / y image pairs, see
`flow_pairs`) gives (H, W, 2) uint8 flow frames instead of RGB ones.

Time conventions: a frame's `time` is its presentation time in seconds from the start of the video stream
(pts - stream start); `index` counts the frames `iter_frames` yields, from 0 (after start/end and fps
resampling), which is what clip frame ranges refer to.
"""
from __future__ import annotations

import errno
import itertools
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np

from .errors import VideoError  # noqa: F401  (hub3d.video.VideoError, as before)
from .io import FLOW_SUBFOLDERS, IMAGE_EXTENSIONS

PathLike = Union[str, os.PathLike]

DEFAULT_FOLDER_FPS = 25.0
_EPS = 1e-6  # seconds: slack for float timestamps compared with start/end and the resampling grid


class Frame(NamedTuple):
    image: np.ndarray  # (H, W, 3) uint8 RGB, display orientation (rotation applied); flow folders: (H, W, 2) x, y
    index: int  # 0-based index among the frames yielded
    time: float  # seconds from the start of the video


@dataclass
class VideoInfo:
    path: str
    width: int  # display size: after rotation
    height: int
    fps: float
    num_frames: Optional[int]  # best estimate (header count, else duration * fps); None when unknown
    duration: Optional[float]  # seconds, None when unknown
    rotation: int = 0  # degrees counter-clockwise applied to decoded frames for display
    codec: Optional[str] = None
    pix_fmt: Optional[str] = None


class PartialVideoWarning(UserWarning):
    """A video that ends well before what its container declares (cut short, or a decode error mid-stream)."""


@dataclass
class Coverage:
    """How much of a video decoding reached, filled in by the decoder as it goes (read it once it is done).

    declared_seconds: the video stream's own duration (or the container's, when the file holds no other
    stream), None when unknown. complete is False only when decoding stopped on an error, or reached the end of
    the file well short of the declared length: a header that is merely wrong (frame counts estimated from the
    bit rate, streams with no duration) with every frame decodable stays complete.
    """

    decoded_seconds: Optional[float] = None  # end of the last decoded frame (its time + duration)
    declared_seconds: Optional[float] = None
    complete: bool = True
    reason: Optional[str] = None


# Well short: less than this share of the declared length, and more than PARTIAL_SLACK_FRAMES frames missing
# (a last frame's nominal length may differ from its real one by about a frame).
PARTIAL_SHARE = 0.9
PARTIAL_SLACK_FRAMES = 3


# --------------------------------------------------------------------------------------------- helpers


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _images(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def _frame_files(folder: Path) -> list[Path]:
    files = _images(folder)
    if not files:
        raise VideoError(folder, f"directory holds no frame images ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(files, key=lambda p: _natural_key(p.name))


# The flow component in a file name: one x/y (or u/v) letter standing alone, as in flow_x_00001.jpg (denseflow,
# MMAction2), x_00001.jpg, VID-000001x.jpg (piergiaj's Charades flow); or subfolders x/ y/ (u/ v/, flow_x/ flow_y/).
_FLOW_LETTER = re.compile(r"(?<![A-Za-z])([xyuv])(?![A-Za-z])")


def flow_pairs(folder: PathLike) -> Optional[list[tuple[Path, Path]]]:
    """The (x image, y image) pairs of a folder of stored optical flow, in frame order; None when the folder does
    not hold flow (no subfolder pair and no x/y file pair). Raises VideoError for a flow folder with an unpaired
    image (a missing x or y file)."""
    folder = Path(folder)
    for xd, yd in FLOW_SUBFOLDERS:
        if (folder / xd).is_dir() and (folder / yd).is_dir():
            xs, ys = _frame_files(folder / xd), _frame_files(folder / yd)
            if [p.name for p in xs] != [p.name for p in ys]:
                missing = sorted({p.name for p in xs} ^ {p.name for p in ys}, key=_natural_key)
                raise VideoError(folder, f"flow folders {xd}/ and {yd}/ differ: {missing[0]} is in one only "
                                         f"({len(xs)} vs {len(ys)} images)")
            return list(zip(xs, ys))
    keyed: dict[tuple[str, bool], dict[str, Path]] = {}
    images = _images(folder)
    for p in images:
        for m in _FLOW_LETTER.finditer(p.stem):
            key = (p.stem[:m.start()] + "*" + p.stem[m.end():], m.group(1) in "uv")
            keyed.setdefault(key, {})["x" if m.group(1) in "xu" else "y"] = p
    pairs = sorted(((k, v) for k, v in keyed.items() if len(v) == 2), key=lambda kv: _natural_key(kv[0][0]))
    if not pairs:
        return None
    paired = {p for _, v in pairs for p in v.values()}
    lone = sorted((p for p in images if p not in paired), key=lambda p: _natural_key(p.name))
    if lone:
        raise VideoError(folder, f"holds x/y optical-flow image pairs, but {lone[0].name} has no partner "
                                 f"({len(lone)} unpaired image(s))")
    return [(v["x"], v["y"]) for _, v in pairs]


def is_flow_folder(source: PathLike) -> bool:
    """Is ``source`` a folder of stored optical flow (see flow_pairs)? False for files and RGB frame folders;
    VideoError for a flow folder with an unpaired image."""
    return os.path.isdir(source) and flow_pairs(source) is not None


def _folder_frames(path: Path) -> tuple[list, bool]:
    """(items, is_flow) of a frame folder: its image files in frame order, or its (x, y) flow pairs."""
    pairs = flow_pairs(path)
    return (_frame_files(path), False) if pairs is None else (pairs, True)


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover  (pillow is a dependency; a broken install still gets told why)
        raise ImportError("reading frame folders needs Pillow: pip install pillow") from e
    return Image


def _check_path(source: PathLike) -> Path:
    path = Path(source)
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise VideoError(path, "symbolic link loop (the link points, directly or not, back to itself)") from None
        raise VideoError(path, "no such file or directory" if e.errno == errno.ENOENT else
                         (e.strerror or str(e))) from None
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        raise VideoError(path, "an image, not a video (give a folder of images to read them as frames)")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    return path


def _open(path: Path):
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise VideoError(path, f"not a readable video ({e.__class__.__name__}: {_ffmpeg_reason(e)})") from e
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoError(path, f"no video stream (streams found: {', '.join(kinds)})")
    return container


def _ffmpeg_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _stream_fps(stream) -> Optional[float]:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return None


# ----------------------------------------------------------------------------------------------- probe


def probe(source: PathLike, *, source_fps: Optional[float] = None) -> VideoInfo:
    """Read a video's header (and decode its first frame, for rotation and the real pixel format)."""
    path = _check_path(source)
    if path.is_dir():
        items, is_flow = _folder_frames(path)
        files = [x for x, _ in items] if is_flow else items
        Image = _pil()

        try:
            with Image.open(files[0]) as im:
                width, height = im.size
                mode = "flow" if is_flow else im.mode  # flow: (x, y) grayscale pairs
        except OSError as e:
            raise VideoError(files[0], f"not a readable image ({e})") from e
        fps = float(source_fps or DEFAULT_FOLDER_FPS)
        return VideoInfo(str(path), width, height, fps, len(files), len(files) / fps, 0,
                         files[0].suffix.lower().lstrip("."), mode)

    container = _open(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        fps = _stream_fps(stream) or DEFAULT_FOLDER_FPS
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        num_frames = stream.frames or (int(round(duration * fps)) if duration else None)
        width, height, pix_fmt, rotation = ctx.width, ctx.height, ctx.format.name if ctx.format else None, 0
        try:  # the first frame carries the display matrix and the decoder's real output format
            first = next(container.decode(stream))
            width, height, pix_fmt = first.width, first.height, first.format.name
            rotation = int(getattr(first, "rotation", 0) or 0)  # PyAV >= 13
        except (StopIteration, Exception):  # noqa: BLE001  (header facts are still worth returning)
            pass
        if int(round(rotation / 90.0)) % 2:
            width, height = height, width
        return VideoInfo(str(path), width, height, fps, num_frames, duration, rotation, ctx.name, pix_fmt)
    finally:
        container.close()


def declared_frames(source: PathLike, fps: Optional[float] = None, source_fps: Optional[float] = None
                    ) -> Optional[int]:
    """Frames a source declares, from its header alone (no frame decoded: cheap enough to count a whole list up
    front), resampled to ``fps`` if given; None when the header does not say (or the file cannot be opened)."""
    path = Path(source)
    if path.is_dir():
        n = len(_folder_frames(path)[0])
        return n if fps is None else int(round(n / float(source_fps or DEFAULT_FOLDER_FPS) * fps))
    container = _open(path)
    try:
        stream = container.streams.video[0]
        seconds, rate = _declared_seconds(container, stream), _stream_fps(stream) or DEFAULT_FOLDER_FPS
        if fps is None:
            return stream.frames or (int(round(seconds * rate)) if seconds else None)
        seconds = seconds or (stream.frames / rate if stream.frames else None)
        return int(round(seconds * fps)) if seconds else None
    finally:
        container.close()


# ---------------------------------------------------------------------------------------------- decode


def _declared_seconds(container, stream) -> Optional[float]:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:  # else it may be an audio track's length
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _decode_file(path: Path, start: Optional[float], end: Optional[float],
                 seek: Optional[float] = None, coverage: Optional[Coverage] = None):
    """Yield (time, load, duration) in presentation order: load() converts the frame to RGB (lazily, so frames
    skipped before `start` or by resampling cost no conversion), duration = 1 / the stream's frame rate.
    Frames before `start` are skipped, decoding stops at the first frame at or after `end`; `seek` (seconds,
    default start) jumps to a keyframe at least 1 s before it first. coverage: filled in (see Coverage)."""
    import av

    coverage = Coverage() if coverage is None else coverage
    container = _open(path)
    try:
        stream = container.streams.video[0]
        coverage.declared_seconds = _declared_seconds(container, stream)
        stream.thread_type = "AUTO"  # frame + slice threads: decoding is the bottleneck on big videos
        # On <= 2 cores FFmpeg's own thread pool competes with the model: measured (bench_decode_options, split)
        # model time x1.08 with auto threads vs x0.92 with 1, frames bit-identical either way.
        if (os.cpu_count() or 1) <= 2:
            stream.thread_count = 1
        tb = stream.time_base or Fraction(1, 90000)
        origin = stream.start_time
        duration = 1.0 / (_stream_fps(stream) or DEFAULT_FOLDER_FPS)
        seek = start if seek is None else seek
        if seek and seek > 1.0:
            try:
                container.seek(max(int((seek - 1.0) / tb) + (origin or 0), 0), stream=stream, backward=True)
            except av.error.FFmpegError:
                container.seek(0, stream=stream)
        to_rgb = rgb_converter()
        decoded = 0
        last_time = None
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                if decoded == 0:
                    raise VideoError(path, f"corrupt video, no frame could be decoded ({_ffmpeg_reason(e)})") from e
                coverage.complete, coverage.reason = False, f"decode error: {_ffmpeg_reason(e)}"
                break
            decoded += 1
            if frame.pts is not None:
                if origin is None:
                    origin = frame.pts
                t = float((frame.pts - origin) * tb)
            else:  # no timestamps (raw elementary streams): assume a constant rate
                t = 0.0 if last_time is None else last_time + duration
            if last_time is not None and t <= last_time - _EPS:
                continue  # out-of-order/duplicate pts after a seek or in broken files: keep time monotonic
            last_time = t
            coverage.decoded_seconds = t + duration
            if start is not None and t < start - _EPS:
                continue
            yield t, partial(to_rgb, frame), duration
            if end is not None and t >= end - _EPS:
                return  # stopped on purpose: the rest of the file is not judged
        if decoded == 0:
            raise VideoError(path, "no frame could be decoded (empty or corrupt video stream)")
        _judge_coverage(path, coverage, duration)
    except av.error.FFmpegError as e:
        raise VideoError(path, f"corrupt video ({_ffmpeg_reason(e)})") from e
    finally:
        container.close()


def _judge_coverage(path, coverage: Coverage, frame_duration: float) -> None:
    """At the end of a decode: mark a video that ends well short of its declared length, and warn."""
    got, declared = coverage.decoded_seconds or 0.0, coverage.declared_seconds
    short = declared and got < PARTIAL_SHARE * declared and declared - got > PARTIAL_SLACK_FRAMES * frame_duration
    if coverage.complete and short:
        coverage.complete, coverage.reason = False, "the file ends early"
    if not coverage.complete:
        of = f" of the {declared:.2f} s its container declares" if declared else ""
        warnings.warn(PartialVideoWarning(f"{path}: incomplete video ({coverage.reason}): decoded {got:.2f} s{of}; "
                                          "results cover only that part"), stacklevel=4)


def rgb_converter():
    """A function PyAV frame -> (H, W, 3) uint8 RGB in display orientation (rotation applied), for one decode's
    frames in one thread. It keeps one VideoReformatter, so one SwsContext, from frame to frame (rebuilt only when
    the size or format changes). frame.to_ndarray() builds a new one per frame: x3.1 the conversion time at
    640x272, x1.24 at 1280x720 (benchmarks/bench_decode_options.py --parts conversion); same pixels."""
    from av.video.reformatter import VideoReformatter

    return partial(_frame_image, VideoReformatter())


def _frame_image(reformatter, frame) -> np.ndarray:
    rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    return _rotate(rgb, int(getattr(frame, "rotation", 0) or 0))


def _read_image(file: Path, mode: str) -> np.ndarray:
    Image = _pil()
    try:
        with Image.open(file) as im:
            return np.asarray(im.convert(mode))
    except OSError as e:
        raise VideoError(file, f"not a readable image ({e})") from e


def _decode_folder(path: Path, fps: float, start: Optional[float], end: Optional[float]):
    """Frame-folder twin of _decode_file: image i (or flow pair i) has time i / fps."""
    shape = []
    items, is_flow = _folder_frames(path)

    def load(item):
        if not is_flow:
            image = _read_image(item, "RGB")
        else:  # grayscale x and y images -> one (H, W, 2) flow frame
            x, y = (_read_image(f, "L") for f in item)
            if x.shape != y.shape:
                raise VideoError(item[1], f"flow image size {y.shape[1]}x{y.shape[0]} differs from its x image's "
                                          f"{x.shape[1]}x{x.shape[0]}")
            image = np.stack([x, y], axis=-1)
        if shape and image.shape != shape[0]:
            raise VideoError(item[0] if is_flow else item,
                             f"frame size {image.shape[1]}x{image.shape[0]} differs from the first "
                             f"frame's {shape[0][1]}x{shape[0][0]} in {path}")
        shape[:] = [image.shape]
        return image

    for i, item in enumerate(items):
        t = i / fps
        if start is not None and t < start - _EPS:
            continue
        yield t, partial(load, item), 1.0 / fps
        if end is not None and t >= end - _EPS:
            break


# --fps warns when resampling makes this many times more frames than the source has (plus a margin): a
# timestamp gap (a broken or concatenated file) would otherwise silently repeat one frame for hours.
RESAMPLE_BLOWUP = 4
RESAMPLE_MARGIN = 250


def _resample(frames, fps: float, first: Optional[float], end: Optional[float], name=None):
    """For each tick first + k / fps, the source frame nearest in time (ties: the later one, as FFmpeg's fps
    filter rounds); ticks run to the end of the last frame (its time + duration) or `end`. Streaming: holds
    one frame, converts only the frames it picks (once). first: None starts at the first frame's time."""
    k = 0
    prev = None  # [time, load, duration, image]
    n_src, warned = 0, False
    for t, load, duration in frames:
        n_src += 1
        if prev is None:
            first = t if first is None else first
        else:
            mid = (prev[0] + t) / 2
            ticks = int(max(mid - first, 0) * fps)
            if not warned and ticks > RESAMPLE_BLOWUP * n_src + RESAMPLE_MARGIN:
                warned = True
                warnings.warn(f"{name or 'video'}: resampling to {fps:g} fps gives ~{ticks} frames from {n_src} real "
                              f"ones: a timestamp gap from {prev[0]:.2f} s to {t:.2f} s repeats one frame "
                              f"{int((t - prev[0]) * fps)} times", stacklevel=2)
            while first + k / fps < mid - _EPS:
                if end is not None and first + k / fps >= end - _EPS:
                    return
                if prev[3] is None:
                    prev[3] = prev[1]()
                yield first + k / fps, prev[3]
                k += 1
        prev = [t, load, duration, None]
        if end is not None and t >= end - _EPS:
            break
    if prev is None:
        return
    stop = prev[0] + prev[2]
    if end is not None:
        stop = min(stop, end)
    while first + k / fps < stop - _EPS:
        if prev[3] is None:
            prev[3] = prev[1]()
        yield first + k / fps, prev[3]
        k += 1


def iter_frames(
    source: PathLike,
    *,
    fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    source_fps: Optional[float] = None,
) -> Iterator[Frame]:
    """Decode a video (file or frame folder) sequentially, one RGB frame at a time.

    fps: resample to this rate (nearest frame in time to each tick start + k / fps); None keeps every frame.
    start, end: seconds; frames with start <= time < end.
    source_fps: frame rate of a frame folder (default 25); ignored for files (their timestamps rule).
    Raises VideoError for missing, empty, non-video, audio-only and undecodable files (a missing path and
    bad arguments at the call, the others at the first frame); a truncated file yields the frames before
    the damage (with a warning). A range with no frame yields nothing.
    """
    timed = timed_frames(source, fps=fps, start=start, end=end, source_fps=source_fps)
    return (Frame(image, i, t) for i, (t, image, _) in enumerate(timed))


def timed_frames(source: PathLike, *, fps=None, start=None, end=None, source_fps=None,
                 coverage: Optional[Coverage] = None) -> Iterator[tuple[float, np.ndarray, float]]:
    """iter_frames' engine: (time, image, duration), duration being the frame's nominal length (1 / the
    stream's frame rate, 1 / fps when resampling), which clip end times need. Same arguments; coverage: a
    Coverage the decoder fills in (how much of the file it read, versus what the container declares)."""
    path = _check_path(source)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    # Resampling needs the frame before start and the one after end (either can be the nearest to a tick).
    dec_start, dec_end = (start, end) if fps is None else (None, end)
    if path.is_dir():
        decoded = _decode_folder(path, float(source_fps or DEFAULT_FOLDER_FPS), dec_start, dec_end)
    else:
        decoded = _decode_file(path, dec_start, dec_end, seek=start, coverage=coverage)
    if fps is None:
        return ((t, load(), d) for t, load, d in decoded if end is None or t < end - _EPS)
    return ((t, image, 1.0 / fps) for t, image in _resample(decoded, fps, start, end, name=path))


def read_frames(source: PathLike, **kwargs) -> np.ndarray:
    """All frames at once, (T, H, W, 3) uint8: for short videos (training clips). Same arguments as iter_frames."""
    images = [f.image for f in iter_frames(source, **kwargs)]
    if not images:
        raise VideoError(source, "no frame in the requested range")
    return np.stack(images)


# ----------------------------------------------------------------------------------------------- write


def write_video(
    path: PathLike,
    frames: Union[np.ndarray, Iterable[np.ndarray]],
    fps: float = 25.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    *,
    times: Optional[Sequence[float]] = None,
    rotation: int = 0,
) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames to a video file, atomically (temp file + rename).

    frames: an array, or any iterable of (H, W, 3) uint8 frames (streamed: long videos need not fit in memory).

    h264 with yuv420p needs even sizes: odd ones are padded by FFmpeg's encoder constraints, so use another
    pix_fmt (yuv444p) or codec (mpeg4 handles odd sizes) to keep them exact.
    times: per-frame presentation times in seconds (variable frame rate); default i / fps.
    rotation: display rotation (degrees counter-clockwise) stored as the stream's display matrix, as phones do.
    """
    import av

    from .io import atomic_path

    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    height, width = np.shape(first)[:2]

    def checked(all_frames):
        for i, frame in enumerate(all_frames):
            frame = np.asarray(frame)
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"{path}: frame {i} must be ({height}, {width}, 3) uint8, got {frame.shape} {frame.dtype}")
            if times is not None and i >= len(times):
                raise ValueError(f"{path}: more frames than the {len(times)} times given")
            yield i, frame
        if times is not None and i + 1 != len(times):
            raise ValueError(f"{path}: {len(times)} times for {i + 1} frames")

    with atomic_path(path, keep_suffix=True) as tmp, av.open(str(tmp), mode="w") as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        if pix_fmt.startswith("gray"):  # RGB -> gray gives full-range luma; say so, or it decodes as limited
            stream.codec_context.color_range = 2  # AVCOL_RANGE_JPEG
        if times is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        if options:
            stream.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for i, frame in checked(itertools.chain([first], frames)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if times is not None:
                vf.pts, vf.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
