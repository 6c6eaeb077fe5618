"""hub3d.video: decoding real files written with PyAV (codecs, sizes, rotation, VFR, resampling, errors)."""
from __future__ import annotations

import warnings

import av
import numpy as np
import pytest
from conftest import frame_id, pattern_frames, random_frames
from PIL import Image

from hub3d.transforms import resize_short_side
from hub3d.video import VideoError, iter_frames, probe, read_frames, write_video

FORMATS = [  # codec, pix_fmt, suffix, (height, width)
    ("libx264", "yuv420p", ".mp4", (48, 64)),
    ("libvpx-vp9", "yuv420p", ".webm", (48, 64)),
    ("mpeg4", "yuv420p", ".avi", (77, 101)),  # odd size
    ("ffv1", "bgr0", ".mkv", (77, 101)),  # lossless
    ("png", "rgb24", ".mov", (30, 40)),  # lossless, smaller than a 112 crop
    ("libx264", "yuv444p", ".mp4", (77, 101)),
    ("libvpx-vp9", "yuv444p", ".mkv", (48, 64)),
    ("libx264", "yuv420p10le", ".mp4", (48, 64)),  # 10-bit
    ("libx264", "gray", ".mp4", (48, 64)),  # h264 monochrome: FFmpeg decodes it as yuvj420p
    ("ffv1", "gray", ".mkv", (48, 64)),  # decodes as gray
]
LOSSLESS = {"ffv1", "png"}


@pytest.mark.parametrize("codec,pix_fmt,suffix,size", FORMATS, ids=lambda v: str(v))
def test_formats_decode_every_frame_in_order(make_video, codec, pix_fmt, suffix, size):
    n, (h, w) = 17, size
    path = make_video(n, h, w, fps=25, codec=codec, pix_fmt=pix_fmt, suffix=suffix)
    info = probe(path)
    assert (info.height, info.width) == (h, w)
    assert info.fps == pytest.approx(25)
    assert info.pix_fmt == ("yuvj420p" if (codec, pix_fmt) == ("libx264", "gray") else pix_fmt)
    assert info.num_frames is not None and abs(info.num_frames - n) <= 1  # webm: estimated from the duration
    frames = list(iter_frames(path))
    assert len(frames) == n
    assert [f.index for f in frames] == list(range(n))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(n)], abs=1e-3)
    for f in frames:
        assert f.image.shape == (h, w, 3) and f.image.dtype == np.uint8
    assert [frame_id(f.image) for f in frames] == list(range(n))
    if codec in LOSSLESS and pix_fmt != "gray":
        np.testing.assert_array_equal(np.stack([f.image for f in frames]), pattern_frames(n, h, w))
    if pix_fmt == "gray":  # gray -> 3 equal channels
        img = frames[3].image
        assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])


def test_gif_palette_and_alpha(make_video):
    # GIF: a palette codec that FFmpeg decodes to bgra; frames must come out RGB, alpha dropped.
    path = make_video(6, codec="gif", pix_fmt="rgb8", suffix=".gif")
    assert probe(path).pix_fmt == "bgra"
    video = read_frames(path)
    assert video.shape == (6, 48, 64, 3)
    r, g, b = video[0, 0, 0].tolist()  # the red marker survives the palette (3-3-2 bits): R and B not swapped
    assert r > 200 and g < 40 and b < 40
    assert [frame_id(f) for f in video] == list(range(6))


@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 32, 33])
def test_frame_counts(make_video, n):
    path = make_video(n, 16, 24, codec="ffv1", pix_fmt="bgr0", suffix=".mkv")
    video = read_frames(path)
    assert video.shape == (n, 16, 24, 3)
    np.testing.assert_array_equal(video, pattern_frames(n, 16, 24))
    assert probe(path).num_frames == n


@pytest.mark.parametrize("n", [1, 17])
def test_h264_short_videos(make_video, n):
    path = make_video(n, codec="libx264")
    assert [frame_id(f) for f in read_frames(path)] == list(range(n))


@pytest.mark.parametrize("rotation,k", [(90, 1), (180, 2), (-90, 3), (270, 3)])
def test_rotation_metadata_rotates_frames(make_video, rotation, k):
    # PyAV writes the display matrix (Stream.set_display_rotation); frames must come out as displayed:
    # rotated counter-clockwise by `rotation` degrees (FFmpeg's convention, as VideoFrame.rotation reports).
    frames = pattern_frames(3, 48, 64)
    path = make_video(frames=frames, codec="libx264", pix_fmt="yuv444p", rotation=rotation)
    info = probe(path)
    assert info.rotation % 360 == rotation % 360
    assert (info.height, info.width) == ((64, 48) if k % 2 else (48, 64))
    video = read_frames(path)
    expected = np.rot90(frames, k, axes=(1, 2))
    assert video.shape == expected.shape
    assert np.abs(video.astype(int) - expected).max() <= 12  # lossy, but the red marker must be in place
    red = video[0, ..., 0].astype(int) - video[0, ..., 1]
    corner = {1: (-1, 0), 2: (-1, -1), 3: (0, -1)}[k]  # 90 ccw: top-left -> bottom-left, ...
    assert red[corner] > 150
    assert red[0, 0] < 50 or k == 0
    # decoders only decode: a short-side resize after decoding keeps the orientation and the display size
    small = resize_short_side(read_frames(path), 24).numpy()
    assert small.shape[1:3] == ((32, 24) if k % 2 else (24, 32))


VFR_TIMES = [0.0, 0.1, 0.15, 0.5, 0.52, 1.0]


def nearest_frame(times, tau):
    """Reference: index of the frame nearest to tau (ties: the later frame)."""
    best = 0
    for i, t in enumerate(times):
        if abs(t - tau) <= abs(times[best] - tau) + 1e-9:
            best = i
    return best


@pytest.mark.parametrize("codec,suffix", [("mpeg2video", ".mpg"), ("libx264", ".h264"), ("libx264", ".ts")])
def test_header_frame_count_is_not_trusted(make_video, codec, suffix):
    # MPEG-PS estimates its duration from the bit rate (1 frame here), a raw .h264 stream has no duration or
    # count at all, MPEG-TS starts its clock at 0.08 s: decoding must still give every frame, times from 0.
    path = make_video(17, codec=codec, suffix=suffix)
    info = probe(path)
    if suffix == ".h264":
        assert info.num_frames is None and info.duration is None
    frames = list(iter_frames(path))
    assert [frame_id(f.image) for f in frames] == list(range(17))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(17)], abs=1e-3)


def test_variable_frame_rate_uses_timestamps(make_video):
    path = make_video(frames=pattern_frames(len(VFR_TIMES)), times=VFR_TIMES, codec="libx264")
    frames = list(iter_frames(path))
    assert [f.time for f in frames] == pytest.approx(VFR_TIMES, abs=1e-3)
    assert [frame_id(f.image) for f in frames] == list(range(len(VFR_TIMES)))
    resampled = list(iter_frames(path, fps=10, end=1.0))
    ticks = [i / 10 for i in range(10)]
    assert [f.time for f in resampled] == pytest.approx(ticks)
    assert [frame_id(f.image) for f in resampled] == [nearest_frame(VFR_TIMES, t) for t in ticks]
    assert [f.index for f in resampled] == list(range(10))


@pytest.mark.parametrize("src_fps,n,target", [(30, 31, 10), (10, 10, 25), (25, 33, 25), (25, 33, 12.5)])
def test_fps_resampling_picks_nearest_frames(make_video, src_fps, n, target):
    path = make_video(n, 16, 24, fps=src_fps, codec="ffv1", pix_fmt="bgr0", suffix=".mkv")
    out = list(iter_frames(path, fps=target))
    times = [i / src_fps for i in range(n)]
    duration = n / src_fps
    ticks = [k / target for k in range(int(np.ceil(duration * target - 1e-6)))]
    assert len(out) == len(ticks)  # the resampled video lasts as long as the source
    assert [f.time for f in out] == pytest.approx(ticks)
    assert [frame_id(f.image) for f in out] == [nearest_frame(times, t) for t in ticks]


def test_start_end(make_video):
    path = make_video(33, 16, 24, codec="ffv1", pix_fmt="bgr0", suffix=".mkv")
    out = list(iter_frames(path, start=0.2, end=0.6))
    assert [frame_id(f.image) for f in out] == list(range(5, 15))
    assert [f.index for f in out] == list(range(10))
    assert [f.time for f in out] == pytest.approx([i / 25 for i in range(5, 15)], abs=1e-6)
    resampled = list(iter_frames(path, start=0.2, end=0.6, fps=10))
    assert [f.time for f in resampled] == pytest.approx([0.2, 0.3, 0.4, 0.5])
    assert [frame_id(f.image) for f in resampled] == [5, 8, 10, 13]  # 0.3 s is frame 7.5: ties take the later
    with pytest.raises(ValueError, match="end"):
        list(iter_frames(path, start=0.5, end=0.2))


def test_start_seeks_in_long_video(make_video):
    # 100 frames, a keyframe every 10: start > 1 s seeks, then skips to the exact frame.
    path = make_video(100, 16, 32, codec="libx264", options={"g": "10", "bf": "2"})
    out = list(iter_frames(path, start=2.5, end=3.0))
    assert [round(f.time * 25) for f in out] == list(range(63, 75))
    assert out[0].time >= 2.5 - 1e-6 and out[-1].time < 3.0
    assert [frame_id(f.image) for f in out] == [round(f.time * 25) % 33 for f in out]
    assert [round(f.time * 25) for f in iter_frames(path, start=3.5)] == list(range(88, 100))
    resampled = list(iter_frames(path, start=2.5, end=3.0, fps=10))  # seeks too; 2.5 s is frame 62.5 -> 63
    assert [f.time for f in resampled] == pytest.approx([2.5, 2.6, 2.7, 2.8, 2.9])
    assert [frame_id(f.image) for f in resampled] == [n % 33 for n in (63, 65, 68, 70, 73)]


def test_frame_folder(make_frame_folder):
    folder = make_frame_folder(17, 30, 40)
    info = probe(folder)
    assert (info.num_frames, info.height, info.width, info.fps) == (17, 30, 40, 25.0)
    frames = list(iter_frames(folder))
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), pattern_frames(17, 30, 40))
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(17)])
    assert [f.time for f in iter_frames(folder, source_fps=10)] == pytest.approx([i / 10 for i in range(17)])
    assert [frame_id(f.image) for f in iter_frames(folder, start=0.2, end=0.4)] == [5, 6, 7, 8, 9]
    assert [frame_id(f.image) for f in iter_frames(folder, fps=12.5)] == list(range(0, 17, 2))


def test_frame_folder_natural_sort_and_jpeg(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = pattern_frames(12, 32, 32)
    for i, frame in enumerate(frames):  # unpadded numbers: 'img_10' must come after 'img_9'
        Image.fromarray(frame).save(folder / f"img_{i}.jpg", quality=95)
    (folder / "notes.txt").write_text("not a frame")
    assert [frame_id(f) for f in read_frames(folder)] == list(range(12))


def test_frame_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no frame images") as e:
        list(iter_frames(empty))
    assert str(empty) in str(e.value)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(pattern_frames(1, 20, 20)[0]).save(mixed / "1.png")
    Image.fromarray(pattern_frames(1, 20, 30)[0]).save(mixed / "2.png")
    with pytest.raises(VideoError, match="differs"):
        read_frames(mixed)


def _write_audio(path, codec, fmt):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=16000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16 if fmt == "s16" else np.float32),
                                           format=fmt, layout="mono")
        frame.sample_rate = 16000
        for _ in range(4):
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "wav", "aac"])
def test_bad_files_raise_video_error_naming_the_path(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.mp4"
    reason = {"missing": "no such file", "empty": "empty", "text": "not a readable video",
              "wav": "no video stream", "aac": "no video stream"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "wav":
        path = _write_audio(tmp_path / "audio.wav", "pcm_s16le", "s16")
    elif kind == "aac":
        path = _write_audio(tmp_path / "audio.m4a", "aac", "fltp")
    for call in (probe, read_frames, lambda p: next(iter_frames(p))):
        with pytest.raises(VideoError, match=reason) as e:
            call(path)
        assert str(path) in str(e.value) and e.value.path == str(path)
    if kind in ("missing", "empty"):  # found at the call, before any iteration
        with pytest.raises(VideoError, match=reason):
            iter_frames(path)


def test_video_error_pickles(tmp_path):
    import pickle

    err = pickle.loads(pickle.dumps(VideoError(tmp_path / "x.mp4", "no video stream")))
    assert isinstance(err, VideoError) and err.path == str(tmp_path / "x.mp4") and err.reason == "no video stream"
    assert str(err) == f"{tmp_path / 'x.mp4'}: no video stream"


def test_truncated_mp4_raises(make_video):
    path = make_video(16, codec="libx264")  # moov atom at the end: a cut file has no index
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError) as e:
        read_frames(path)
    assert str(path) in str(e.value)


def test_truncated_avi_does_not_crash(make_video):
    # The header still says 33 frames; FFmpeg's AVI demuxer gives up early without its index: what it
    # yields must be the first frames, and read_frames must not crash.
    path = make_video(frames=random_frames(33, 48, 64), codec="mpeg4", suffix=".avi")
    full = read_frames(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    assert probe(path).num_frames == 33
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        video = read_frames(path)
    assert 2 <= len(video) < 33
    np.testing.assert_array_equal(video[:-1], full[: len(video) - 1])  # the last one may be cut


def test_truncated_mkv_yields_what_it_can(make_video):
    path = make_video(33, 48, 64, codec="ffv1", pix_fmt="bgr0", suffix=".mkv")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        video = read_frames(path)
    assert 5 <= len(video) < 33
    np.testing.assert_array_equal(video[:5], pattern_frames(5, 48, 64))


@pytest.mark.parametrize("size", [(48, 64), (77, 101), (30, 20)])
def test_short_side_matches_pil(make_video, size):
    h, w = size
    frames = random_frames(4, h, w, seed=1)
    path = make_video(frames=frames, codec="ffv1", pix_fmt="bgr0", suffix=".mkv")
    small = resize_short_side(read_frames(path), 32).numpy()  # the decoded frames, resized as the clips do
    short, long = sorted((h, w))
    assert min(small.shape[1:3]) == 32 and max(small.shape[1:3]) == int(32 * long / short)
    ref = np.stack([np.asarray(Image.fromarray(f).resize(small.shape[2:0:-1], Image.BILINEAR)) for f in frames])
    assert np.abs(small.astype(int) - ref).max() <= 1


def test_iter_frames_is_lazy(make_video):
    path = make_video(33, codec="libx264")
    it = iter_frames(path)
    first = next(it)
    assert first.index == 0 and frame_id(first.image) == 0
    it.close()  # closing the generator closes the container


def test_write_video_streams_an_iterable_and_checks_each_frame(tmp_path):
    frames = (np.full((32, 48, 3), 10 * i, dtype=np.uint8) for i in range(20))  # a generator: never one array
    path = write_video(tmp_path / "streamed.mp4", frames, fps=10)
    assert read_frames(path).shape == (20, 32, 48, 3)
    mixed = [np.zeros((32, 48, 3), np.uint8), np.zeros((32, 40, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1 must be"):
        write_video(tmp_path / "mixed.mp4", mixed)
    assert not list(tmp_path.glob("*mixed*"))  # nothing half-written left behind
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [])


def _pyav_rgb(path):
    """Reference frames: PyAV's own per-frame conversion, frame.to_ndarray(format="rgb24")."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize("codec,pix_fmt,suffix,size", [f for f in FORMATS if f[0] != "ffv1"], ids=lambda v: str(v))
def test_decoding_reuses_one_converter_with_the_same_pixels(make_video, monkeypatch, codec, pix_fmt, suffix, size):
    # The converter (and its SwsContext) is made once per decode, not once per frame as frame.to_ndarray() does
    # (x1.2-3 the conversion time, see hub3d.video.rgb_converter). Pixels must be PyAV's per-frame ones.
    from av.video import reformatter

    made = []
    real = reformatter.VideoReformatter

    def counting():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(reformatter, "VideoReformatter", counting)
    path = make_video(9, *size, codec=codec, pix_fmt=pix_fmt, suffix=suffix, frames=random_frames(9, *size))
    frames = [f.image for f in iter_frames(path)]
    assert len(made) == 1
    monkeypatch.undo()
    reference = _pyav_rgb(path)
    assert len(frames) == len(reference) == 9
    for got, want in zip(frames, reference):
        np.testing.assert_array_equal(got, want)


def test_a_size_change_mid_stream_is_converted_at_each_size(make_video, tmp_path):
    # MPEG-TS streams can be concatenated byte for byte (the second one's times follow the first's); the joined
    # stream changes size at the seam, and the one converter must follow it.
    a = make_video(5, 48, 64, suffix=".ts", frames=random_frames(5, 48, 64, seed=1))
    b = make_video(5, 72, 96, suffix=".ts", frames=random_frames(5, 72, 96, seed=2),
                   times=[(10 + i) / 25 for i in range(5)])
    joined = tmp_path / "joined.ts"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    frames = [f.image for f in iter_frames(joined)]
    reference = _pyav_rgb(joined)
    assert [f.shape for f in frames] == [(48, 64, 3)] * 5 + [(72, 96, 3)] * 5
    for got, want in zip(frames, reference):
        np.testing.assert_array_equal(got, want)
