"""hub3d.transforms vs a plain per-frame PIL reference (Image.resize BILINEAR, crop, normalise in numpy).

Tolerance: resized uint8 frames within 1 gray level of PIL's per pixel (and < 1% of pixels off at all);
after normalisation that is 1 / 255 * value_scale / std.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_frames
from PIL import Image

from hub3d.pretrained import (
    KINETICS400_MEAN_255,
    KINETICS700_MEAN,
    KINETICS700_STD,
    TORCHVISION_KINETICS_MEAN,
    TORCHVISION_KINETICS_STD,
    PretrainedCfg,
)
from hub3d.transforms import Preprocess, center_crop, crop, hflip, normalize, preprocess_clip, resize, resize_short_side

CFG_2018 = PretrainedCfg(value_scale=255, mean=KINETICS400_MEAN_255, std=(1, 1, 1), resize=112, crop_size=112)
CFG_2020 = PretrainedCfg(value_scale=1, mean=KINETICS700_MEAN, std=KINETICS700_STD, resize=112, crop_size=112)
CFG_TV = PretrainedCfg(value_scale=1, mean=TORCHVISION_KINETICS_MEAN, std=TORCHVISION_KINETICS_STD,
                       resize=(128, 171), crop_size=112)


def pil_resize(frame, h, w):
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))


def pil_reference(frames, cfg):
    """The 2018/2020 code's per-frame PIL pipeline: Resize (short side, int(size * long / short)) or (h, w),
    CenterCrop (offsets int(round(...))), ToTensor-like scaling, Normalize."""
    out = []
    for frame in frames:
        img = Image.fromarray(frame)
        if isinstance(cfg.resize, int):
            w, h = img.size
            size = (cfg.resize, int(cfg.resize * h / w)) if w < h else (int(cfg.resize * w / h), cfg.resize)
        else:
            size = (cfg.resize[1], cfg.resize[0])
        img = img.resize(size, Image.BILINEAR)
        w, h = img.size
        c = cfg.crop_size
        left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
        img = img.crop((left, top, left + c, top + c))
        x = np.asarray(img, np.float64) / 255 * cfg.value_scale
        out.append((x - np.array(cfg.mean)) / np.array(cfg.std))
    return np.stack(out).transpose(3, 0, 1, 2)  # (3, T, H, W)


@pytest.mark.parametrize("shape,size", [((240, 320), 112), ((77, 101), 112), ((480, 270), 112), ((50, 60), 112),
                                        ((200, 300), 64), ((112, 150), 112)])
def test_resize_short_side_matches_pil(shape, size):
    frames = random_frames(3, *shape, seed=shape[0])
    out = resize_short_side(frames, size)
    h, w = out.shape[1:3]
    assert min(h, w) == size
    short, long = sorted(shape)
    assert max(h, w) == int(size * long / short)
    assert out.dtype == torch.uint8 and out.shape == (3, h, w, 3)
    ref = np.stack([pil_resize(f, h, w) for f in frames])
    diff = np.abs(out.numpy().astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_resize_both_sides_and_noise():
    frames = np.random.default_rng(0).integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)  # worst case: noise
    out = resize(frames, (128, 171))
    ref = np.stack([pil_resize(f, 128, 171) for f in frames])
    assert np.abs(out.numpy().astype(int) - ref).max() <= 1
    assert resize(frames, 64).shape == (2, 64, 64, 3)
    same = resize(frames, (240, 320))
    assert torch.equal(same, torch.from_numpy(frames))  # no-op when the size already matches


def test_center_crop_offsets_and_padding():
    frames = np.zeros((2, 112, 149, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(149, dtype=np.uint8)[None, None, :]  # red = x coordinate
    frames[:, :, :, 1] = np.arange(112, dtype=np.uint8)[None, :, None]  # green = y coordinate
    out = center_crop(frames, 112)
    assert out.shape == (2, 112, 112, 3)
    assert out[0, 0, 0, 0] == 18 and out[0, 0, 0, 1] == 0  # (149 - 112) / 2 = 18.5 -> round() = 18
    out = center_crop(frames, (100, 101))
    assert out[0, 0, 0, 0] == 24 and out[0, 0, 0, 1] == 6
    small = np.full((1, 20, 30, 3), 7, np.uint8)  # smaller than the crop: zero-padded around, centred
    out = center_crop(small, 32).numpy()
    assert out.shape == (1, 32, 32, 3)
    assert (out[0, 6:26, 1:31] == 7).all() and out.sum() == 7 * 20 * 30 * 3


def test_crop_and_flip():
    frames = random_frames(2, 40, 50)
    out = crop(frames, 5, 7, 20, 30)
    np.testing.assert_array_equal(out.numpy(), frames[:, 5:25, 7:37])
    with pytest.raises(ValueError, match="outside"):
        crop(frames, 30, 0, 20, 20)
    np.testing.assert_array_equal(hflip(frames).numpy(), frames[:, :, ::-1])


@pytest.mark.parametrize("cfg", [CFG_2018, CFG_2020, CFG_TV], ids=["2018", "2020", "torchvision"])
def test_normalize_follows_cfg(cfg):
    frames = random_frames(3, 8, 10)
    out = normalize(frames, cfg)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 8, 10)
    ref = (frames.astype(np.float64) / 255 * cfg.value_scale - np.array(cfg.mean)) / np.array(cfg.std)
    np.testing.assert_allclose(out.numpy(), ref.transpose(3, 0, 1, 2), atol=1e-4 * cfg.value_scale)
    if cfg is CFG_2018:  # 0-255 floats minus the mean: a 255 pixel stays far above 1
        assert out.max() > 100


@pytest.mark.parametrize("cfg", [CFG_2018, CFG_2020, CFG_TV], ids=["2018", "2020", "torchvision"])
@pytest.mark.parametrize("shape", [(240, 320), (77, 101), (60, 50)])
def test_preprocess_matches_pil_pipeline(cfg, shape):
    frames = random_frames(4, *shape, seed=3)
    out = Preprocess(cfg)(frames)
    assert out.shape == (3, 4, 112, 112) and out.dtype == torch.float32
    ref = pil_reference(frames, cfg)
    one_level = cfg.value_scale / 255 / min(cfg.std)
    assert np.abs(out.numpy() - ref).max() <= one_level + 1e-4
    torch.testing.assert_close(preprocess_clip(torch.from_numpy(frames), cfg), out)


def test_inputs_checked():
    frames = random_frames(2, 16, 16)
    assert Preprocess(CFG_2020.replace(resize=8, crop_size=8))(frames[0]).shape == (3, 1, 8, 8)  # one frame
    with pytest.raises(ValueError, match="uint8"):
        resize(frames.astype(np.float32), 8)
    with pytest.raises(ValueError, match="channels last"):
        resize(torch.from_numpy(frames).permute(0, 3, 1, 2), 8)
    with pytest.raises(ValueError, match="std"):
        normalize(frames, CFG_2020, std=(1, 0, 1))
    read_only = frames.copy()
    read_only.flags.writeable = False
    assert center_crop(read_only, 8).shape == (2, 8, 8, 3)


@pytest.mark.parametrize("interpolation,pil,tolerance", [("bicubic", Image.BICUBIC, 2), ("nearest", Image.NEAREST, 0)])
@pytest.mark.parametrize("shape,size", [((240, 320), (112, 149)), ((60, 50), (134, 112))])
def test_other_interpolations_match_pil(interpolation, pil, tolerance, shape, size):
    frames = np.random.default_rng(0).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    out = resize(frames, size, interpolation).numpy()
    ref = np.stack([np.asarray(Image.fromarray(f).resize(size[::-1], pil)) for f in frames])
    assert np.abs(out.astype(int) - ref).max() <= tolerance
    cfg = CFG_2020.replace(interpolation=interpolation)
    assert torch.equal(Preprocess(cfg).spatial(frames), center_crop(resize_short_side(frames, 112, interpolation), 112))
    with pytest.raises(ValueError, match="interpolation"):
        resize(frames, 8, "lanczos")
