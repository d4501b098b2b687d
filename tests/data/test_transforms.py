"""Transforms: the camera look of training crops (CameraLook) and its config fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cerberus.config import load_config
from cerberus.data.transforms import CameraLook, build_transforms, camera_look
from cerberus.errors import CerberusError

LUMA = np.array([0.299, 0.587, 0.114])
STRONG = dict(brightness=0.4, contrast=0.3, saturation=0.6, gamma=0.3, cast=0.08)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def person(colour: tuple[int, int, int]) -> Image.Image:
    """A 64x128 crop: a grey background with a ``colour`` body in the middle."""
    x = np.full((128, 64, 3), 150, np.uint8)
    x[20:110, 16:48] = colour
    return Image.fromarray(x)


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_look_is_off_by_default_and_never_at_test_time():
    assert not camera_look(load_config(None, []).data).active
    assert not CameraLook().active
    plain = build_transforms(height=32, width=16, train=True)
    off = build_transforms(height=32, width=16, train=True, look=CameraLook())
    on = build_transforms(height=32, width=16, train=True, look=CameraLook(noise=5))
    assert [type(t) for t in off.transforms] == [type(t) for t in plain.transforms]
    assert isinstance(on.transforms[0], CameraLook)
    test = build_transforms(height=32, width=16, train=False, look=CameraLook(noise=5))
    assert not any(isinstance(t, CameraLook) for t in test.transforms)


def test_brightness_is_one_factor_drawn_in_range():
    image = person((40, 70, 180))
    look = CameraLook(brightness=0.4)
    for seed in range(20):
        torch.manual_seed(seed)
        out = as_array(look(image))
        torch.manual_seed(seed)
        factor = float(torch.empty(()).uniform_(0.6, 1.4))
        assert 0.6 <= factor <= 1.4
        assert np.abs(out - np.clip(as_array(image) * factor, 0, 255)).max() <= 0.5 + 1e-9


def test_saturation_keeps_each_pixels_luma():
    image = person((200, 30, 35))
    look = CameraLook(saturation=0.6)
    for seed in range(10):
        torch.manual_seed(seed)
        out = as_array(look(image))
        body = out[20:110, 16:48]
        assert np.abs(body @ LUMA - np.array([200, 30, 35]) @ LUMA).max() < 2.0
    torch.manual_seed(0)
    spreads = [np.ptp(as_array(look(image))[60, 30]) for _ in range(30)]
    assert max(spreads) - min(spreads) > 40  # the saturation does change


def test_gamma_keeps_black_and_white_and_order():
    ramp = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8)[None, :, None], (8, 1, 3))
    look = CameraLook(gamma=0.5)
    torch.manual_seed(1)
    for _ in range(10):
        out = as_array(look(Image.fromarray(ramp)))[0, :, 0]
        assert out[0] == 0 and out[-1] == 255
        assert np.all(np.diff(out) >= 0)


@pytest.mark.parametrize(
    "colour", [(40, 70, 180), (200, 30, 35), (40, 140, 60), (230, 210, 40)]
)  # blue, red, green, yellow of the renderer
def test_colour_steps_keep_the_colour_name(colour):
    """No hue rotation: the channels above the pixel's channel mean stay the same (blue: B;
    red: R; yellow: R and G)."""
    image = person(colour)
    look = CameraLook(**STRONG)
    strong = set(np.flatnonzero(np.array(colour) > np.mean(colour)))
    torch.manual_seed(0)
    for _ in range(100):
        body = as_array(look(image))[60, 30]
        assert set(np.flatnonzero(body > body.mean())) == strong


def test_low_res_removes_fine_detail_and_keeps_size():
    checker = (np.indices((128, 64)).sum(0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([checker] * 3, -1))
    torch.manual_seed(0)
    out = CameraLook(low_res=1.0, low_res_width=(15, 15))(image)
    assert out.size == (64, 128)
    assert as_array(image).std() > 120 and as_array(out).std() < 20
    never = CameraLook(low_res=0.0, noise=0.0, jpeg_quality=0, brightness=0.0)
    assert np.array_equal(as_array(never(image)), as_array(image))


def test_blur_noise_jpeg_change_pixels_repeatably():
    image = person((40, 70, 180))
    for look in (CameraLook(blur=1.5), CameraLook(noise=8), CameraLook(jpeg_quality=10)):
        torch.manual_seed(3)
        a = look(image)
        torch.manual_seed(3)
        b = look(image)
        assert a.size == image.size and a.mode == "RGB"
        assert np.array_equal(as_array(a), as_array(b))
        changed = []
        for seed in range(5):
            torch.manual_seed(seed)
            changed.append(np.abs(as_array(look(image)) - as_array(image)).max() > 0)
        assert sum(changed) >= 4


def test_config_fields_reach_the_look():
    cfg = load_config(CONFIGS / "synthetic_cctv.yaml")
    look = camera_look(cfg.data)
    assert look.active
    d = cfg.data
    assert (look.brightness, look.contrast, look.saturation, look.gamma, look.cast) == (
        d.brightness, d.contrast, d.saturation, d.gamma, d.cast
    )  # fmt: skip
    assert (look.low_res, look.low_res_width, look.blur, look.noise, look.jpeg_quality) == (
        d.low_res, tuple(d.low_res_width), d.blur, d.noise, d.jpeg_quality
    )  # fmt: skip
    assert look.low_res_width == (15, 40) and look.jpeg_quality == 30


@pytest.mark.parametrize(
    "override, words",
    [
        ("data.saturation=1.0", "data.saturation must be in [0, 1)"),
        ("data.brightness=-0.1", "data.brightness must be in [0, 1)"),
        ("data.low_res=1.5", "data.low_res must be a probability"),
        ("data.low_res_width=[40,15]", "data.low_res_width must be two widths"),
        ("data.low_res_width=[0,15]", "data.low_res_width must be two widths"),
        ("data.jpeg_quality=100", "data.jpeg_quality must be 0 (off) to 95"),
        ("data.noise=-1", "data.noise must be >= 0"),
        ("data.gamma=-0.2", "data.gamma must be >= 0"),
    ],
)
def test_bad_look_values_are_one_line(override, words):
    with pytest.raises(CerberusError) as err:
        load_config(None, [override])
    assert words in str(err.value) and "\n" not in str(err.value)
