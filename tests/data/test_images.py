"""The one image reader: EXIF orientation, high bit depths, the same pixels on every path in;
an unreadable image is named, in a loader worker too."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cerberus.attributes.schema_files import MARKET1501
from cerberus.data.datasets import load_image
from cerberus.data.images import open_image, to_rgb8
from cerberus.errors import CerberusError
from tests.conftest import assert_one_line, make_tree, tiny_yaml

ORIENTATION = 0x0112
# EXIF orientation -> how the stored pixels were turned from the upright picture (the tag tells a
# viewer to undo it).
STORED = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
}


def upright_image(seed: int = 0, size: tuple[int, int] = (24, 40)) -> Image.Image:
    """A non-symmetric RGB picture (width, height = ``size``)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    pixels[: size[1] // 3] //= 4  # a dark top, so a turned picture differs everywhere
    return Image.fromarray(pixels, mode="RGB")


def save_turned(img: Image.Image, path, orientation: int) -> None:
    """``img`` stored turned, with the EXIF orientation tag that says how to show it upright."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    img.transpose(STORED[orientation]).save(path, exif=exif)


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_is_applied_on_every_path_in(tmp_path, orientation):
    from cerberus.web.app import Limits, decode_image

    upright = upright_image(orientation)
    upright.save(tmp_path / "upright.png")
    save_turned(upright, tmp_path / "phone.png", orientation)
    assert Image.open(tmp_path / "phone.png").size != upright.size or orientation in (2, 3)
    want = np.asarray(load_image(tmp_path / "upright.png"))
    assert np.array_equal(np.asarray(load_image(tmp_path / "phone.png")), want)
    data = (tmp_path / "phone.png").read_bytes()
    assert np.array_equal(np.asarray(open_image(data)), want)
    assert np.array_equal(np.asarray(decode_image(data, Limits())), want)
    assert np.array_equal(np.asarray(open_image(Image.open(tmp_path / "phone.png"))), want)


def test_a_turned_phone_photo_embeds_as_its_upright_copy(tmp_path):
    from cerberus.inference.embed import extract_features, image_set
    from tests.conftest import tiny_model

    upright = upright_image(7, (32, 64))
    upright.save(tmp_path / "upright.png")
    save_turned(upright, tmp_path / "phone.png", 6)
    images = image_set([tmp_path / "upright.png", tmp_path / "phone.png"], MARKET1501)
    f = extract_features(tiny_model(), images, height=64, width=32, num_workers=0)
    np.testing.assert_allclose(f[0], f[1], atol=1e-5)


def test_a_turned_pil_image_embeds_as_a_turned_file_does(tmp_path):
    """The Python API's in-memory path reads a PIL image as the file path does (upright)."""
    from cerberus.inference.embed import embed_images, to_pil
    from tests.conftest import tiny_model

    upright = upright_image(3, (32, 64))
    save_turned(upright, tmp_path / "phone.png", 8)
    with Image.open(tmp_path / "phone.png") as turned:
        pil = [to_pil(x) for x in (upright, turned, tmp_path / "phone.png")]
    f = embed_images(tiny_model(), pil, height=64, width=32)
    np.testing.assert_allclose(f[1], f[0], atol=1e-4)
    np.testing.assert_allclose(f[1], f[2], atol=1e-5)


def gray16(seed: int = 0) -> np.ndarray:
    """A 16-bit grayscale picture using the whole 0..65535 range."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 65535, 40 * 24).reshape(40, 24)
    return np.clip(ramp + rng.normal(0, 3000, ramp.shape), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_grayscale_reads_as_its_8_bit_copy(tmp_path, mode):
    pixels = gray16(len(mode))
    eight = np.round(pixels / 257).astype(np.uint8)
    if mode == "I;16B":
        img = Image.frombytes("I;16B", (24, 40), pixels.astype(">u2").tobytes())
    else:
        img = Image.fromarray(pixels).convert(mode) if mode == "I" else Image.fromarray(pixels)
    assert img.mode == mode
    deep = tmp_path / ("deep.tif" if mode == "I" else "deep.png")  # PNG: 16-bit gray on disk
    img.save(deep)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    got = np.asarray(load_image(deep)).astype(int)
    want = np.asarray(load_image(tmp_path / "eight.png")).astype(int)
    assert got.shape == want.shape == (40, 24, 3)
    assert np.abs(got - want).max() <= 1
    direct = np.asarray(to_rgb8(img)).astype(int)  # a PIL image in that mode, not from a file
    assert np.abs(direct - want).max() <= 1


def test_float_and_wide_integer_images_are_scaled_not_clipped():
    x = np.linspace(0, 1, 40 * 24, dtype=np.float32).reshape(40, 24)
    got = np.asarray(to_rgb8(Image.fromarray(x, mode="F")))[..., 0].astype(int)
    assert np.abs(got - np.round(x * 255)).max() <= 1
    wide = Image.fromarray((x * 1e6 - 2e5).astype(np.int32), mode="I")  # outside 0..65535
    got = np.asarray(to_rgb8(wide))[..., 0].astype(int)
    assert got.min() == 0 and got.max() == 255 and np.all(np.diff(got.ravel()) >= 0)


def test_unreadable_bytes_and_files_name_what_was_read(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(CerberusError, match="empty.png: unreadable image"):
        open_image(tmp_path / "empty.png")
    with pytest.raises(CerberusError, match="^image bytes: unreadable image"):
        open_image(b"not an image")


def test_unreadable_training_image_in_a_worker_is_one_line(tmp_path_factory, tmp_path, cli):
    bench = make_tree(tmp_path_factory.mktemp("bad") / "m", MARKET1501, size=(64, 32))
    broken = sorted((bench / "bounding_box_train").glob("*.jpg"))[0]
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    config = tiny_yaml(tmp_path, bench, data={"num_workers": 1})
    code, _, err = cli("train", "-c", config)
    assert_one_line(code, err, broken.name, "unreadable image")
