"""hub3d.errors: one base for every hub3d error, the built-in bases kept, all exported from hub3d."""
import pickle

import pytest

import hub3d
from hub3d import errors

# Each error with the built-in base that code written before hub3d.errors may catch it by.
BUILTIN_BASES = {
    "ConfigError": ValueError,
    "VideoError": Exception,
    "CheckpointError": ValueError,
    "UnsafeCheckpointError": ValueError,
    "WeightsNotFoundError": FileNotFoundError,
    "ChecksumError": ValueError,
    "DownloadError": OSError,
    "IncompleteError": RuntimeError,
    "OutputError": OSError,
    "ExportError": RuntimeError,
    "MissingExtraError": ImportError,
}


@pytest.mark.parametrize("name", sorted(BUILTIN_BASES))
def test_every_error_derives_from_hub3d_error_and_keeps_its_builtin_base(name):
    cls = getattr(errors, name)
    assert issubclass(cls, errors.Hub3dError) and issubclass(cls, BUILTIN_BASES[name])
    assert getattr(hub3d, name) is cls and name in hub3d.__all__


def test_errors_module_lists_every_error_class():
    classes = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, BaseException)}
    assert classes == set(errors.__all__) == set(BUILTIN_BASES) | {"Hub3dError"}
    assert issubclass(errors.UnsafeCheckpointError, errors.CheckpointError)


def test_video_error_keeps_its_home_and_pickles():
    from hub3d.video import VideoError

    assert VideoError is errors.VideoError
    err = VideoError("/data/clip.mp4", "no video stream")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is VideoError and (back.path, back.reason) == ("/data/clip.mp4", "no video stream")
    assert str(back) == "/data/clip.mp4: no video stream"


def test_missing_extra_names_the_extra_and_pickles():
    err = errors.MissingExtraError("flow", "TV-L1 optical flow", "No module named 'cv2'")
    assert str(err) == ("TV-L1 optical flow needs the optional extra 'flow': pip install 'hub3d[flow]' "
                        "(No module named 'cv2')")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.extra == "flow"


def test_weights_not_found_prints_its_message():
    assert str(errors.WeightsNotFoundError("no weights found for x")) == "no weights found for x"


def test_library_errors_are_hub3d_errors(tmp_path):
    with pytest.raises(hub3d.Hub3dError, match="unknown model"):
        hub3d.create_model("no_such_model")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(hub3d.CheckpointError, match="empty.pth: the file is empty"):
        hub3d.load("resnet3d_10", pretrained=empty)
    with pytest.raises(hub3d.ConfigError, match="unknown PretrainedCfg fields"):
        hub3d.PretrainedCfg.from_dict({"bogus": 1})
