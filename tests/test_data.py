"""hub3d.data: SyntheticMotion (determinism, time-only classes) and the dataset layouts."""
import csv
import logging

import numpy as np
import pytest

from hub3d.data import (
    HMDB51,
    UCF101,
    CsvDataset,
    KineticsCsv,
    SyntheticMotion,
    VideoFolder,
    build_dataset,
    read_classes,
    write_synthetic_videos,
)
from hub3d.data.synthetic import FORWARD, render
from hub3d.pretrained import read_label_file


def motion_stats(video):
    """Change of the moving edges' x and y centroid, and ratio of their amount, from the first to the second
    half of a video (edges = large frame-to-frame differences)."""
    d = np.abs(np.diff(video.astype(np.int16), axis=0)).sum(-1)
    w = (d > 60).astype(float)
    ys, xs = np.mgrid[0:video.shape[1], 0:video.shape[2]]
    m = w.sum((1, 2)) + 1e-9
    cx, cy = (w * xs).sum((1, 2)) / m, (w * ys).sum((1, 2)) / m
    h = len(m) // 2
    return cx[h:].mean() - cx[:h].mean(), cy[h:].mean() - cy[:h].mean(), m[h:].mean() / m[:h].mean()


def test_synthetic_is_deterministic_and_balanced():
    a, b = SyntheticMotion(16, seed=3), SyntheticMotion(16, seed=3)
    c = SyntheticMotion(16, seed=4)
    assert a.classes == list(read_label_file("synthetic_motion.txt")) and len(a.classes) == 8
    va, ya = a[5]
    assert va.shape == (32, 64, 64, 3) and va.dtype == np.uint8
    assert np.array_equal(va, b[5][0]) and ya == b[5][1]
    assert not np.array_equal(va, c[5][0])
    assert np.bincount(a.targets, minlength=8).tolist() == [2] * 8
    small = SyntheticMotion(2, seed=0, num_frames=12, size=40, transform=lambda f: f.shape)
    assert small[1] == ((12, 40, 40, 3), 1)
    with pytest.raises(IndexError):
        a.video(16)


def test_single_frames_carry_no_label():
    """Each class is its partner played backwards: same frames, only the order differs."""
    for forward, backward in FORWARD.items():
        for i in range(3):
            fwd = render(forward, np.random.default_rng([11, i]))
            bwd = render(backward, np.random.default_rng([11, i]))
            assert not np.array_equal(fwd, bwd)
            assert np.array_equal(fwd[::-1], bwd)
            assert sorted(f.tobytes() for f in fwd) == sorted(f.tobytes() for f in bwd)


def test_synthetic_classes_move_as_named():
    for i in range(6):
        dx, _, _ = motion_stats(render("move_right", np.random.default_rng([5, i])))
        _, dy, _ = motion_stats(render("move_up", np.random.default_rng([5, i])))
        _, _, growth = motion_stats(render("grow", np.random.default_rng([5, i])))
        assert dx > 0 and dy < 0 and growth > 1
    # A left-right flip turns move_right into move_left: the flip relabelling the trainer uses.
    data = SyntheticMotion(1, seed=0)
    assert data.hflip_classes["move_right"] == "move_left" and "grow" not in data.hflip_classes
    dx, _, _ = motion_stats(render("move_right", np.random.default_rng([5, 0]))[:, :, ::-1])
    assert dx < 0


def test_write_synthetic_videos_round_trip(tmp_path):
    paths = write_synthetic_videos(tmp_path, 8, seed=2, num_frames=16, size=32)
    assert len(paths) == 8 and all(p.parent.parent == tmp_path for p in paths)
    folder = VideoFolder(tmp_path, classes=SyntheticMotion.classes)
    assert folder.classes == SyntheticMotion.classes and len(folder) == 8
    original = SyntheticMotion(8, seed=2, num_frames=16, size=32)
    for i in range(len(folder)):
        frames, label = folder[i]
        j = int(str(folder.name(i)).rsplit("_", 1)[1].split(".")[0])
        assert label == original.label(j)
        assert frames.shape == (16, 32, 32, 3)
        assert np.abs(frames.astype(float) - original.video(j)).mean() < 6  # lossy h264, near-lossless settings


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_video_folder_class_order(tmp_path):
    touch(tmp_path / "walk" / "a.mp4")
    touch(tmp_path / "run" / "b.avi")
    touch(tmp_path / "run" / "notes.txt")  # not a video: ignored
    (tmp_path / "run" / "frames_c").mkdir()  # a frame folder is a video
    ds = VideoFolder(tmp_path)
    assert ds.classes == ["run", "walk"]
    assert sorted((p.split("/")[-1], y) for p, y in ds.samples) == [("a.mp4", 1), ("b.avi", 0), ("frames_c", 0)]
    assert VideoFolder(tmp_path, classes=["walk", "run", "jump"]).targets.count(0) == 1
    with pytest.raises(ValueError, match="not among the given classes"):
        VideoFolder(tmp_path, classes=["walk"])


def test_csv_dataset(tmp_path):
    touch(tmp_path / "v" / "1.mp4")
    touch(tmp_path / "v" / "2.mp4")
    (tmp_path / "list.csv").write_text("path,label\nv/1.mp4,b\nv/2.mp4,a\n")
    ds = CsvDataset(tmp_path / "list.csv")
    assert ds.classes == ["a", "b"] and ds.targets == [1, 0]
    assert ds.samples[0][0] == str(tmp_path / "v" / "1.mp4")
    (tmp_path / "noheader.csv").write_text("v/1.mp4,b\n")
    assert CsvDataset(tmp_path / "noheader.csv", classes=["b", "a"]).targets == [0]
    with pytest.raises(ValueError, match="noheader.csv.*'b' is not among"):
        CsvDataset(tmp_path / "noheader.csv", classes=["a"])
    (tmp_path / "bad.csv").write_text("only_one_column\n")
    with pytest.raises(ValueError, match="bad.csv: row 1"):
        CsvDataset(tmp_path / "bad.csv")
    assert isinstance(build_dataset(str(tmp_path / "list.csv")), CsvDataset)


def test_kinetics_csv(tmp_path, caplog):
    rows = [("abseiling", "AAA", 10, 20, "train"), ("zumba", "BBB", 0, 10, "train"),
            ("abseiling", "CCC", 5, 15, "train")]
    with open(tmp_path / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        w.writerows(rows)
    touch(tmp_path / "videos" / "abseiling" / "AAA_000010_000020.mp4")
    touch(tmp_path / "videos" / "BBB_000000_000010.mp4")  # flat layout works too
    with caplog.at_level(logging.WARNING):
        ds = KineticsCsv(tmp_path / "train.csv", tmp_path / "videos")
    assert ds.classes == ["abseiling", "zumba"]
    assert sorted((p.split("/")[-1], y) for p, y in ds.samples) == [
        ("AAA_000010_000020.mp4", 0), ("BBB_000000_000010.mp4", 1)]
    assert "1 of 3 videos not found" in caplog.text
    auto = build_dataset(str(tmp_path / "train.csv"), video_root=tmp_path / "videos")
    assert isinstance(auto, KineticsCsv) and len(auto) == 2


def test_ucf101_splits(tmp_path):
    ann = tmp_path / "ucfTrainTestlist"
    ann.mkdir()
    (ann / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (ann / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n")
    (ann / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    for rel in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g08_c01.avi",
                "Archery/v_Archery_g01_c01.avi"):
        touch(tmp_path / "UCF-101" / rel)
    train = UCF101(tmp_path / "UCF-101", ann, split=1, train=True)
    test = build_dataset(str(tmp_path / "UCF-101"), train=False, fmt="ucf101", annotations=ann)
    assert train.classes == ["ApplyEyeMakeup", "Archery"] and train.targets == [0, 1]
    assert test.targets == [1] and test.samples[0][0].endswith("v_Archery_g01_c01.avi")
    with pytest.raises(ValueError, match="trainlist02.txt"):
        UCF101(tmp_path / "UCF-101", ann, split=2)


def test_hmdb51_splits(tmp_path):
    ann = tmp_path / "splits"
    ann.mkdir()
    (ann / "brush_hair_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (ann / "cartwheel_test_split1.txt").write_text("d.avi 1 \n")
    for rel in ("brush_hair/a.avi", "brush_hair/b.avi", "brush_hair/c.avi", "cartwheel/d.avi"):
        touch(tmp_path / "hmdb51" / rel)
    train = HMDB51(tmp_path / "hmdb51", ann, split=1, train=True)
    test = HMDB51(tmp_path / "hmdb51", ann, split=1, train=False)
    assert train.classes == ["brush_hair", "cartwheel"]
    assert sorted((p.split("/")[-1], y) for p, y in train.samples) == [("a.avi", 0), ("d.avi", 1)]
    assert [p.split("/")[-1] for p, _ in test.samples] == ["b.avi"]
    (ann / "cartwheel_test_split1.txt").write_text("d.avi yes\n")
    with pytest.raises(ValueError, match="cartwheel_test_split1.txt: line 1"):
        HMDB51(tmp_path / "hmdb51", ann)


def test_class_list_file(tmp_path):
    (tmp_path / "classes.txt").write_text("b\n\na\n")
    assert read_classes(tmp_path / "classes.txt") == ["b", "a"]
    (tmp_path / "dup.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="dup.txt: class names repeat"):
        read_classes(tmp_path / "dup.txt")
