"""A reader of TensorFlow frozen graphs (``GraphDef`` ``.pb`` files) without TensorFlow.

The file is a protocol-buffers message read here field by field from the wire format
(https://protobuf.dev/programming-guides/encoding/): each field is a key varint
``field_number << 3 | wire_type`` followed by a varint (type 0), 8 bytes (type 1), a
length-prefixed byte string (type 2) or 4 bytes (type 5). The messages and field numbers used
(from TensorFlow's ``graph.proto``, ``node_def.proto``, ``attr_value.proto``, ``tensor.proto``,
``tensor_shape.proto``):

- ``GraphDef``: ``node`` 1 (repeated ``NodeDef``).
- ``NodeDef``: ``name`` 1, ``op`` 2, ``input`` 3 (repeated), ``device`` 4, ``attr`` 5
  (``map<string, AttrValue>``: repeated entries with ``key`` 1 and ``value`` 2).
- ``AttrValue``: ``list`` 1, ``s`` 2, ``i`` 3, ``f`` 4, ``b`` 5, ``type`` 6, ``shape`` 7,
  ``tensor`` 8.
- ``ListValue``: ``s`` 2, ``i`` 3, ``f`` 4, ``b`` 5, ``type`` 6, ``shape`` 7, ``tensor`` 8.
- ``TensorProto``: ``dtype`` 1, ``tensor_shape`` 2, ``tensor_content`` 4 (raw little-endian
  values), ``float_val`` 5, ``double_val`` 6, ``int_val`` 7, ``string_val`` 8,
  ``int64_val`` 10, ``bool_val`` 11 (one value stands for a tensor filled with it).
- ``TensorShapeProto``: ``dim`` 2 (``Dim``: ``size`` 1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cerberus.errors import CerberusError

DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}
"""TensorFlow ``DataType`` enum values and the NumPy type of their ``tensor_content``."""

DT_STRING = 7


class WireError(ValueError):
    """The bytes are not a well-formed protocol-buffers message."""


@dataclass
class Node:
    """One ``NodeDef``: ``attr`` holds Python values (``bytes`` for strings, ``int``,
    ``float``, ``bool``, a shape as a list of ints, a tensor as a NumPy array, lists of them)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, object] = field(default_factory=dict)

    @property
    def value(self) -> np.ndarray:
        """The tensor of a ``Const`` node."""
        return self.attr["value"]  # type: ignore[return-value]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(data: bytes) -> list[tuple[int, int, object]]:
    """The ``(field_number, wire_type, value)`` of a message's fields in order: ``int`` for
    varints, ``bytes`` for the other wire types (8 or 4 raw bytes, or the length-prefixed
    payload)."""
    out: list[tuple[int, int, object]] = []
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise WireError(f"wire type {wire} (groups or invalid)")
        if pos > end:
            raise WireError("field runs past the end")
        out.append((number, wire, value))
    return out


def _packed_varints(value: object) -> list[int]:
    if isinstance(value, int):
        return [value]
    ints, pos = [], 0
    while pos < len(value):  # type: ignore[arg-type]
        v, pos = _varint(value, pos)  # type: ignore[arg-type]
        ints.append(v)
    return ints


def _signed(v: int, bits: int = 64) -> int:
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def _shape(data: bytes) -> list[int]:
    dims = []
    for number, _, value in fields(data):
        if number == 2:
            size = 0
            for n, _, v in fields(value):  # type: ignore[arg-type]
                if n == 1:
                    size = _signed(v)  # type: ignore[arg-type]
            dims.append(size)
    return dims


def tensor(data: bytes) -> np.ndarray:
    """A ``TensorProto`` as a NumPy array (strings: an object array of ``bytes``)."""
    dtype, shape, content = 1, [], None
    floats: list[float] = []
    doubles: list[float] = []
    ints: list[int] = []
    strings: list[bytes] = []
    for number, _, value in fields(data):
        if number == 1:
            dtype = value  # type: ignore[assignment]
        elif number == 2:
            shape = _shape(value)  # type: ignore[arg-type]
        elif number == 4:
            content = value
        elif number == 5:
            floats += struct.unpack(f"<{len(value) // 4}f", value)  # type: ignore[arg-type]
        elif number == 6:
            doubles += struct.unpack(f"<{len(value) // 8}d", value)  # type: ignore[arg-type]
        elif number in (7, 10, 11, 13):  # int_val, int64_val, bool_val, half_val (as bits)
            ints += [_signed(v) for v in _packed_varints(value)]
        elif number == 8:
            strings.append(value)  # type: ignore[arg-type]
    count = int(np.prod(shape)) if shape else 1
    if dtype == DT_STRING:
        values = np.array(strings, dtype=object)
        return values.reshape(shape) if values.size == count else values
    if dtype not in DTYPES:
        raise WireError(f"tensor dtype {dtype} not supported")
    np_dtype = DTYPES[dtype]
    if content is not None:
        return np.frombuffer(content, np_dtype).reshape(shape).copy()  # type: ignore[arg-type]
    if dtype == 19:
        listed = np.array(ints, np.uint16).view(np.float16)
    else:
        listed = np.array(floats or doubles or ints, np_dtype)
    if listed.size == 0:
        return np.zeros(shape, np_dtype)
    if listed.size < count:  # the last value repeats (one value: a filled tensor)
        listed = np.concatenate([listed, np.full(count - listed.size, listed[-1], np_dtype)])
    return listed.reshape(shape)


def _list_value(data: bytes) -> list[object]:
    out: list[object] = []
    for number, _, value in fields(data):
        if number == 2:
            out.append(value)
        elif number in (3, 6):
            out += [_signed(v) for v in _packed_varints(value)]
        elif number == 4:
            out += list(struct.unpack(f"<{len(value) // 4}f", value))  # type: ignore[arg-type]
        elif number == 5:
            out += [bool(v) for v in _packed_varints(value)]
        elif number == 7:
            out.append(_shape(value))  # type: ignore[arg-type]
        elif number == 8:
            out.append(tensor(value))  # type: ignore[arg-type]
    return out


def _attr_value(data: bytes) -> object:
    for number, _, value in fields(data):
        if number == 1:
            return _list_value(value)  # type: ignore[arg-type]
        if number == 2:
            return value
        if number in (3, 6):
            return _signed(value)  # type: ignore[arg-type]
        if number == 4:
            return struct.unpack("<f", value)[0]  # type: ignore[arg-type]
        if number == 5:
            return bool(value)
        if number == 7:
            return _shape(value)  # type: ignore[arg-type]
        if number == 8:
            return tensor(value)  # type: ignore[arg-type]
    return None


def node(data: bytes) -> Node:
    """A ``NodeDef``."""
    result = Node(name="", op="")
    for number, _, value in fields(data):
        if number == 1:
            result.name = value.decode()  # type: ignore[union-attr]
        elif number == 2:
            result.op = value.decode()  # type: ignore[union-attr]
        elif number == 3:
            result.inputs.append(value.decode())  # type: ignore[union-attr]
        elif number == 5:
            key, attr = "", None
            for n, _, v in fields(value):  # type: ignore[arg-type]
                if n == 1:
                    key = v.decode()  # type: ignore[union-attr]
                elif n == 2:
                    attr = _attr_value(v)  # type: ignore[arg-type]
            result.attr[key] = attr
    return result


def parse_graph(data: bytes) -> dict[str, Node]:
    """The nodes of a serialised ``GraphDef`` by name, in file order.

    Raises:
        WireError: the bytes are not a GraphDef (malformed, or a node without name or op).
    """
    nodes: dict[str, Node] = {}
    for number, wire, value in fields(data):
        if number != 1:
            continue  # versions (4), library (2), ...
        if wire != 2:
            raise WireError("GraphDef.node is not a message")
        n = node(value)  # type: ignore[arg-type]
        if not n.name or not n.op:
            raise WireError("a node without name or op")
        nodes[n.name] = n
    if not nodes:
        raise WireError("no nodes")
    return nodes


def read_graph(path: str | Path) -> dict[str, Node]:
    """The nodes of the frozen TensorFlow graph in ``path`` by name.

    Raises:
        CerberusError: the file is missing, unreadable or not a GraphDef (one line naming it).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CerberusError(f"{path}: cannot read the TensorFlow graph ({exc.strerror})") from None
    try:
        return parse_graph(data)
    except (WireError, UnicodeDecodeError, ValueError, struct.error) as exc:
        raise CerberusError(
            f"{path}: not a TensorFlow frozen graph (GraphDef .pb): {exc}"
        ) from None


def constants(nodes: dict[str, Node]) -> dict[str, np.ndarray]:
    """The tensors of the graph's ``Const`` nodes by node name."""
    return {name: n.value for name, n in nodes.items() if n.op == "Const" and "value" in n.attr}
