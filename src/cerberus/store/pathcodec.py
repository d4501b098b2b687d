"""A track's path (:class:`~cerberus.store.base.TrackPath`) as one compact, lossless blob, the
form the local (SQLite) and Milvus backends store it in.

The blob of a path of ``n`` frames is ``zlib`` of three arrays one after the other:

- the frame numbers as int64 differences (the first against 0): a track alive on consecutive
  processed frames is a run of equal numbers, which ``zlib`` reduces to almost nothing;
- the ``(n, 4)`` float32 boxes, byte-shuffled (byte ``j`` of every value together, for
  ``j = 0..3``): the sign / exponent bytes of neighbouring boxes agree and compress well;
- the detected flags, 8 to a byte (``numpy.packbits``).

About 10 bytes per path frame for a person walking for an hour at 10 fps (25 raw); the measured
figure on a gallery is in docs/galleries.md ("A track's path").
"""

from __future__ import annotations

import zlib

import numpy as np

from cerberus.store.base import StoreError, TrackPath


def encode(path: TrackPath) -> bytes:
    """The blob of ``path``'s frames, boxes and detected flags (see the module's text)."""
    n = len(path)
    deltas = np.diff(path.frames.astype("<i8"), prepend=np.int64(0)).astype("<i8")
    boxes = np.ascontiguousarray(path.boxes, "<f4").view(np.uint8).reshape(n * 4, 4)
    shuffled = np.ascontiguousarray(boxes.T)
    flags = np.packbits(path.detected.astype(bool))
    return zlib.compress(deltas.tobytes() + shuffled.tobytes() + flags.tobytes(), 6)


def decode(source: str, camera: str, track: int, n: int, blob: bytes) -> TrackPath:
    """The :class:`TrackPath` of ``n`` frames that :func:`encode` wrote as ``blob``; a blob of
    the wrong size is refused with one line."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error as e:
        raise StoreError(f"track {track} of {source}: unreadable stored path ({e})") from None
    want = n * 8 + n * 16 + (n + 7) // 8
    if len(raw) != want:
        raise StoreError(
            f"track {track} of {source}: stored path of {len(raw)} bytes, expected {want} "
            f"for {n} frames"
        )
    frames = np.cumsum(np.frombuffer(raw[: n * 8], "<i8")).astype(np.int64)
    shuffled = np.frombuffer(raw[n * 8 : n * 24], np.uint8).reshape(4, n * 4)
    boxes = np.ascontiguousarray(shuffled.T).view("<f4").reshape(n, 4).astype(np.float32)
    detected = np.unpackbits(np.frombuffer(raw[n * 24 :], np.uint8), count=n).astype(bool)
    return TrackPath(source, camera, int(track), frames, boxes, detected)
