"""Issue 11's data defects, each made here as a new user would meet it: videos cut short, crashes and resumes,
output names, damaged or foreign files in the output folder, write failures, and CLI hygiene."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import random_frames

import hub3d
from hub3d import io, outputs
from hub3d.cli import main
from hub3d.video import Coverage, iter_frames, timed_frames

CLIP_LEN = 8
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = hub3d.get_pretrained_cfg("resnet3d_10").replace(crop_size=32, resize=32, clip_len=CLIP_LEN, num_classes=4)
    torch.manual_seed(1)
    net = hub3d.create_model("resnet3d_10", pretrained_cfg=cfg, widen_factor=0.25)
    d = tmp_path_factory.mktemp("tiny_model")
    net.save_pretrained(d)
    return d


@pytest.fixture
def videos(make_video, tmp_path):
    return [
        make_video(frames=random_frames(20, 48, 64, seed=0), fps=10, name="a.mp4", directory=tmp_path / "vids"),
        make_video(frames=random_frames(9, 48, 64, seed=1), fps=10, name="b.mp4", directory=tmp_path / "vids/sub"),
    ]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def faststart_mp4(make_video, path: Path, n: int = 250) -> Path:
    """An mp4 with its index (moov) first, as streaming sites serve them: a cut copy still opens."""
    import av

    plain = make_video(frames=random_frames(n, 48, 64, seed=2), fps=25, name="plain.mp4")
    with av.open(str(plain)) as src, av.open(str(path), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return path


def cut(path: Path, share: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def no_temp_files(root):
    return not [p for p in Path(root).rglob("*") if io.TMP_MARKER in p.name]


# ------------------------------------------------------------------------------------- 1. cut-short videos
def test_cut_faststart_mp4_is_flagged(model_dir, make_video, tmp_path):
    # Before: exit 0, no warning, results for 67 of 250 frames as if complete.
    whole = faststart_mp4(make_video, tmp_path / "whole.mp4")
    cut_short = cut(faststart_mp4(make_video, tmp_path / "cut.mp4"), 0.3)
    out = tmp_path / "res.json"
    r = run("classify", whole, cut_short, "-m", model_dir, "--json", out, "-q")
    assert r.exit_code == 1
    # The decoder reports either the end of the data or a decode error there, depending on its threading.
    warning = next(line for line in r.stderr.splitlines() if line.startswith(f"warning: {cut_short}: incomplete video"))
    assert "decoded 2.68 s of the 10.00 s" in warning
    assert "--allow-partial" in r.stderr and str(cut_short) in r.stderr.splitlines()[-1]
    res = {v["video"]: v for v in json.loads(out.read_text())["videos"]}
    assert res[str(whole)]["complete"] is True and res[str(whole)]["decoded_seconds"] == pytest.approx(10.0)
    c = res[str(cut_short)]
    assert c["complete"] is False and c["declared_seconds"] == pytest.approx(10.0)
    assert c["decoded_seconds"] == pytest.approx(2.68, abs=0.05) and c["n_clips"] == 9  # 67 frames -> 9 clips of 8
    r = run("classify", cut_short, "-m", model_dir, "--json", out, "-q", "--allow-partial")
    assert r.exit_code == 0 and "incomplete video" in r.stderr
    # Features: the index carries the flag too.
    r = run("features", cut_short, "-m", model_dir, "--out-dir", tmp_path / "f", "-q", "--allow-partial")
    assert r.exit_code == 0
    entry = json.loads((tmp_path / "f" / outputs.INDEX_NAME).read_text())["videos"][0]
    assert (entry["complete"], entry["declared_seconds"]) == (False, pytest.approx(10.0))


@pytest.mark.parametrize("codec,suffix", [("mpeg2video", ".mpg"), ("libx264", ".h264"), ("libx264", ".ts")])
def test_wrong_or_missing_headers_stay_complete(make_video, codec, suffix):
    # MPEG-PS declares a length from its bit rate, raw h264 declares none: every frame decodes, so complete.
    path = make_video(17, codec=codec, suffix=suffix)
    coverage = Coverage()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(timed_frames(path, coverage=coverage))) == 17
    assert coverage.complete and coverage.decoded_seconds == pytest.approx(17 / 25, abs=1e-3)


def test_decode_error_mid_stream_is_incomplete(make_video):
    path = cut(make_video(frames=random_frames(33, 48, 64), codec="mpeg4", suffix=".avi"), 0.6)
    coverage = Coverage()
    with pytest.warns(hub3d.video.PartialVideoWarning, match=f"{path}: incomplete video"):
        n = len(list(timed_frames(path, coverage=coverage)))
    assert n < 33 and not coverage.complete and coverage.declared_seconds == pytest.approx(0.8)  # its stream's


# ---------------------------------------------------------------------------------- 2. resume after crash
KILL_AFTER_FIRST_OUTPUT = """
import os, signal, sys
import hub3d.io
real = hub3d.io.write_npy
def write_then_die(path, array):
    real(path, array)
    os.kill(os.getpid(), signal.SIGKILL)  # right after the first output file: no index written
hub3d.io.write_npy = write_then_die
from hub3d.cli import main
main(sys.argv[1:])
"""


def test_sigkill_after_an_output_then_resume_and_rebuild(model_dir, videos, tmp_path):
    # Before: --skip-existing wrote clip_frames: null and 0 csv rows for the killed video; no index -> 0 rows.
    out_dir = tmp_path / "feats"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_OUTPUT, "features", *map(str, videos), "-m",
                        str(model_dir), "--out-dir", str(out_dir), "-q"], env=env, capture_output=True, timeout=300)
    assert p.returncode == -9, p.stderr.decode()
    assert (out_dir / "a.npy").exists() and not (out_dir / outputs.INDEX_NAME).exists()
    os.utime(out_dir / "a.npy", ns=(1, 1))
    r = run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "--skip-existing")
    assert r.exit_code == 0 and "1 video(s) already done, 1 to go" in r.stderr
    assert (out_dir / "a.npy").stat().st_mtime_ns == 1  # not recomputed
    index = json.loads((out_dir / outputs.INDEX_NAME).read_text())
    assert index["format"] == "hub3d-features-index"
    a = index["videos"][0]
    assert (a["video"], a["rows"], a["clip_frames"]) == (str(videos[0]), 3, [[0, 8], [8, 16], [16, 20]])
    assert a["model"] == str(model_dir) and a["clip_len"] == CLIP_LEN and a["tag"] is not None
    csv_rows = (out_dir / outputs.INDEX_CSV).read_text().splitlines()[1:]
    assert len(csv_rows) == 3 + 2
    # The index lost: rebuilt from the outputs alone.
    (out_dir / outputs.INDEX_NAME).unlink()
    (out_dir / outputs.INDEX_CSV).unlink()
    r = run("features", "--rebuild-index", out_dir)
    assert r.exit_code == 0 and "2 feature file(s) indexed" in r.stderr
    rebuilt = json.loads((out_dir / outputs.INDEX_NAME).read_text())
    assert rebuilt["videos"] == index["videos"]
    assert (out_dir / outputs.INDEX_CSV).read_text().splitlines()[1:] == csv_rows


def test_npz_describes_itself(model_dir, videos, tmp_path):
    out_dir = tmp_path / "feats"
    assert run("features", videos[1], "-m", model_dir, "--out-dir", out_dir, "--format", "npz", "-q").exit_code == 0
    assert not list(out_dir.glob("*.json.json")) and not (out_dir / "b.npz.json").exists()
    desc = outputs.read_description(out_dir / "b.npz")
    assert (desc["video"], desc["rows"], desc["clip_frames"], desc["clip_len"]) == (
        str(videos[1]), 2, [[0, 8], [8, 9]], CLIP_LEN)
    (out_dir / outputs.INDEX_NAME).unlink()
    assert run("features", "--rebuild-index", out_dir).exit_code == 0
    assert json.loads((out_dir / outputs.INDEX_NAME).read_text())["videos"][0]["file"] == "b.npz"


# ------------------------------------------------------------------------------------ 3. stable names
def test_adding_a_video_from_another_folder_renames_nothing(model_dir, videos, make_video, tmp_path):
    # Before: the common folder moved up, so a.npy became vids/a.npy (everything recomputed).
    out_dir = tmp_path / "feats"
    assert run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "-q").exit_code == 0
    assert sorted(p.name for p in out_dir.glob("*.npy")) == ["a.npy", "b.npy"]
    for p in out_dir.glob("*.npy"):
        os.utime(p, ns=(1, 1))
    other = make_video(frames=random_frames(9, 48, 64, seed=5), fps=10, name="a.mp4", directory=tmp_path / "six")
    r = run("features", *videos, other, "-m", model_dir, "--out-dir", out_dir, "--skip-existing")
    assert r.exit_code == 0 and "2 video(s) already done, 1 to go" in r.stderr
    assert all(p.stat().st_mtime_ns == 1 for p in (out_dir / "a.npy", out_dir / "b.npy"))
    index = {e["video"]: e["file"] for e in json.loads((out_dir / outputs.INDEX_NAME).read_text())["videos"]}
    assert index[str(videos[0])] == "a.npy" and index[str(other)].startswith("a-") and index[str(other)] != "a.npy"
    np.testing.assert_array_equal(np.load(out_dir / index[str(other)]).shape, (2, np.load(out_dir / "a.npy").shape[1]))
    # The same names again in another order: still done.
    r = run("features", other, *videos, "-m", model_dir, "--out-dir", out_dir, "--skip-existing")
    assert r.exit_code == 0 and "3 video(s) already done, 0 to go" in r.stderr


# ------------------------------------------------------------------------- 4. damaged or foreign files
def test_npy_cut_short_is_redone(model_dir, videos, tmp_path):
    out_dir = tmp_path / "feats"
    assert run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "-q").exit_code == 0
    good = np.load(out_dir / "a.npy")
    cut(out_dir / "a.npy", 0.5)
    r = run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "--skip-existing")
    assert r.exit_code == 0 and "1 video(s) already done, 1 to go" in r.stderr
    assert f"warning: {out_dir / 'a.npy'}: unreadable" in r.stderr and "computing it again" in r.stderr
    np.testing.assert_allclose(np.load(out_dir / "a.npy"), good, atol=1e-6)


@pytest.mark.parametrize("text", ['{"videos": [', "[]", '{"videos":[{"x":1}]}', '{"videos": [], "mine": 1}'])
def test_foreign_index_files_are_never_overwritten(model_dir, videos, tmp_path, text):
    # Before: tracebacks for the malformed ones, the valid one silently overwritten.
    out_dir = tmp_path / "feats"
    out_dir.mkdir()
    (out_dir / "index.json").write_text(text)
    for resume in ([], ["--skip-existing"]):
        r = run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "-q", *resume)
        assert r.exit_code == 0 and (out_dir / "index.json").read_text() == text  # not ours: left alone
    (out_dir / outputs.INDEX_NAME).write_text(text)  # at hub3d's own name, without the marker: refused
    before = sorted(os.listdir(out_dir))
    r = run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "--skip-existing")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{out_dir / outputs.INDEX_NAME}: cannot write (exists and is not a hub3d index" in r.stderr
    assert (out_dir / outputs.INDEX_NAME).read_text() == text and sorted(os.listdir(out_dir)) == before


def test_malformed_results_json_with_skip_existing(model_dir, videos, tmp_path):
    out = tmp_path / "res.json"
    out.write_text('{"videos": [')
    r = run("classify", videos[0], "-m", model_dir, "--json", out, "--skip-existing", "-q")
    assert r.exit_code == 1 and f"{out}: cannot write (exists and is not a hub3d results file" in r.stderr
    assert out.read_text() == '{"videos": ['


# --------------------------------------------------------------------------------------- 5. write errors
def test_unwritable_output_fails_before_any_decoding(model_dir, videos, tmp_path, monkeypatch):
    decoded = []
    real = hub3d.video._decode_file
    monkeypatch.setattr(hub3d.video, "_decode_file", lambda *a, **k: decoded.append(a) or real(*a, **k))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["features", "--out-dir", blocker / "feats"], ["features", "--out", blocker / "f.npy"],
                 ["classify", "--json", blocker / "r.json"]):
        r = run(*args, videos[0], "-m", model_dir, "-q")
        assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
            f"Error: {blocker}{'/feats' if args[1] == '--out-dir' else ''}: cannot write (Not a directory)"], r.stderr
    assert decoded == []


def test_disk_full_names_the_real_file_and_keeps_earlier_outputs(model_dir, videos, tmp_path, monkeypatch):
    out_dir = tmp_path / "feats"
    assert run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    real_fsync = os.fsync

    def fsync(fd):  # b's output finds the disk full (a's were written before it)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".b.npy"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)
    r = run("features", *videos, "-m", model_dir, "--out-dir", out_dir, "-q")
    monkeypatch.undo()
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1] == f"Error: {out_dir / 'b.npy.json'}: cannot write (No space left on device)"
    assert "Traceback" not in r.output and io.TMP_MARKER not in r.output
    assert no_temp_files(out_dir) and {p.name: p.read_bytes() for p in out_dir.iterdir()}.keys() == before.keys()
    assert (out_dir / "b.npy").read_bytes() == before["b.npy"]  # the old output is intact
    assert outputs.read_description(out_dir / "a.npy")["rows"] == 3


# ------------------------------------------------------------------------------- 6. progress bar total
def test_progress_bar_total_from_headers(make_video, make_frame_folder):
    from hub3d.inference import _progress_bar
    from hub3d.specs import ClipSpec

    paths = [make_video(20), make_video(9), make_frame_folder(5)]
    spec = ClipSpec(clip_len=8, stride=8)
    bar, counts_clips = _progress_bar(True, paths, spec)
    expected = sum(len(list(hub3d.iter_clips(p, spec))) for p in paths)
    assert counts_clips and bar.total == expected == 3 + 2 + 1
    bar.close()
    bar, counts_clips = _progress_bar(True, [np.zeros((4, 8, 8, 3), np.uint8), paths[0]], spec)
    assert not counts_clips and bar.total == 2 and bar.unit == "video"  # in-memory frames: count videos
    bar.close()


# ----------------------------------------------------------------------------------- 7. --fps and gaps
def test_fps_warns_on_a_huge_timestamp_gap(make_video):
    path = make_video(frames=random_frames(4, 48, 64), times=[0.0, 0.04, 0.08, 100.0], codec="libx264")
    frames = iter_frames(path, fps=25)
    with pytest.warns(UserWarning, match=rf"{path}: resampling to 25 fps gives ~\d+ frames from 4 real ones: a "
                                         r"timestamp gap from 0.08 s to 100.00 s"):
        for _ in range(5):
            next(frames)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(iter_frames(make_video(20), fps=50))) == 40  # ordinary upsampling: no warning


# --------------------------------------------------------------------------- 8. images, lists, links
def test_image_txt_and_symlink_loop_inputs(model_dir, tmp_path):
    from PIL import Image

    png = tmp_path / "photo.png"
    Image.fromarray(random_frames(1, 48, 64)[0]).save(png)
    notes = tmp_path / "notes.txt"
    notes.write_text("Some notes about the videos\n")
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    r = run("classify", png, notes, loop, "-m", model_dir, "-q")
    assert r.exit_code == 1
    assert f"error: {png}: an image, not a video" in r.stderr  # before: a 1-frame video, silently
    assert f"error: {notes}: a text file, not a video; to read it as a list of videos, give @{notes}" in r.stderr
    assert f"error: {loop}: symbolic link loop" in r.stderr  # before: "no such file"
    assert "Some notes" not in r.stderr


# ------------------------------------------------------------------------------------- 9. CLI hygiene
def test_warnings_are_one_line(model_dir, make_video, tmp_path):
    cut_short = cut(make_video(frames=random_frames(33, 48, 64), codec="mpeg4", suffix=".avi"), 0.6)
    r = run("classify", cut_short, "-m", model_dir, "-q", "--allow-partial")
    assert r.exit_code == 0
    lines = [line for line in r.stderr.splitlines() if "incomplete video" in line]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {cut_short}: incomplete video")
    assert "Warning:" not in r.stderr and "warnings.warn" not in r.stderr and ".py:" not in r.stderr


def test_sigint_exits_130(model_dir, videos, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(hub3d.inference, "iter_classify", interrupted)
    r = run("classify", videos[0], "-m", model_dir, "-q")
    assert r.exit_code == 130 and "interrupted" in r.stderr


def test_json_dash_writes_standard_output(model_dir, videos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("classify", videos[0], "-m", model_dir, "--json", "-", "-q")
    assert r.exit_code == 0 and not (tmp_path / "-").exists()
    data = json.loads(r.stdout)
    assert data["videos"][0]["video"] == str(videos[0]) and data["videos"][0]["complete"] is True
    assert str(videos[0]) in r.stderr  # the table went to standard error


def test_crash_between_sidecar_and_npy_is_told_apart(model_dir, videos, tmp_path, monkeypatch):
    # A rerun with another clip length stopped after the new description, before the new .npy: the old data
    # must not pass for the new run's.
    out_dir = tmp_path / "feats"
    assert run("features", videos[0], "-m", model_dir, "--out-dir", out_dir, "-q").exit_code == 0
    old = (out_dir / "a.npy").read_bytes()

    def no_npy(path, array):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "write_npy", no_npy)
    r = run("features", videos[0], "-m", model_dir, "--out-dir", out_dir, "-q", "--clip-len", 4, "--stride", 8)
    assert r.exit_code == 130 and (out_dir / "a.npy").read_bytes() == old
    monkeypatch.undo()
    assert json.loads((out_dir / "a.npy.json").read_text())["clip_len"] == 4
    with pytest.raises(outputs.DamagedOutput, match="not what a.npy.json describes"):
        outputs.read_description(out_dir / "a.npy")
    r = run("features", videos[0], "-m", model_dir, "--out-dir", out_dir, "--skip-existing", "--clip-len", 4,
            "--stride", 8)
    assert r.exit_code == 0 and "0 video(s) already done, 1 to go" in r.stderr and "computing it again" in r.stderr
    assert outputs.read_description(out_dir / "a.npy")["clip_len"] == 4


def test_output_error_is_an_oserror_and_pickles():
    import pickle

    err = hub3d.OutputError("/out/a.npy", "No space left on device", errno.ENOSPC)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, OSError) and back.errno == errno.ENOSPC
    assert str(back) == "/out/a.npy: cannot write (No space left on device)" and back.path == "/out/a.npy"
