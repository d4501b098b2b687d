"""Devices and data-loader options: a device that is not there, or a negative worker count or
batch size, is one line naming the option."""

from __future__ import annotations

import pytest

from tests.conftest import assert_one_line

NO_GPU = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="needs a machine without CUDA"
)


@pytest.mark.parametrize(
    "args, names",
    [
        (["eval", "--device", "foo"], ["--device", "foo"]),
        pytest.param(["eval", "--device", "cuda"], ["--device", "CUDA"], marks=NO_GPU),
        pytest.param(["describe", "IMG", "--device", "cuda:0"], ["--device"], marks=NO_GPU),
        (["eval", "--workers", "-1"], ["--workers", "-1"]),
        (["eval", "--batch-size", "-1"], ["--batch-size", "-1"]),
        (["extract", "--images", ".", "--out", "f.npz", "--workers", "-1"], ["--workers"]),
        (["extract", "--images", ".", "--out", "f.npz", "--batch-size", "0"], ["--batch-size"]),
    ],
)
def test_bad_device_and_loader_options_are_one_line(tmp_path, ckpt, cli, args, names):
    args = [str(tmp_path / "img.jpg") if a == "IMG" else a for a in args]
    code, _, err = cli(*args[:1], "--checkpoint", ckpt, *args[1:])
    assert_one_line(code, err, *names)
