"""Frames of a source, method §9.3: a video file FFmpeg decodes (PyAV), a MOTChallenge folder
(``img1/000001.jpg`` + ``seqinfo.ini``) or a live stream (``rtsp://``, ``http://``).

Every frame comes as a :class:`Frame`: its number (1-based, as in the MOTChallenge files: frame
1 is the first), its offset in seconds from the source's first frame, its UTC time and its RGB
pixels. Times:

- a file: ``pts * time_base`` from the first frame, plus ``start`` (``--start``); without
  ``start``, the container's ``creation_time`` when it has one (said in a log line), else the
  frames have no time (``nan``; a log line says to give ``--start``);
- a MOTChallenge folder: ``(number - 1) / frameRate`` plus ``start`` (else no time);
- a live stream: the wall clock when the frame arrives (or ``start`` plus the stream's own
  offset when ``start`` is given).

A file's frame number is computed from its pts (``round(offset * fps) + 1``), so
:func:`read_frame` can seek to it; a stream's is the count of frames received.
"""

from __future__ import annotations

import configparser
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from cerberus.errors import CerberusError
from cerberus.store.base import StoreError, to_utc_seconds

logger = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
"""URL schemes read as live streams (followed until stopped or until the stream ends)."""

OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        number: 1-based frame number in the source.
        offset: seconds since the source's first frame.
        timestamp: UTC seconds since the epoch; ``nan`` where unknown.
        image: ``(H, W, 3)`` uint8 RGB.
    """

    number: int
    offset: float
    timestamp: float
    image: np.ndarray


def is_stream(source: str | Path) -> bool:
    """Whether ``source`` is a URL read as a live stream."""
    return isinstance(source, str) and urlsplit(source).scheme.lower() in STREAM_SCHEMES


def source_name(source: str | Path) -> str:
    """The name a source is stored under: a file or folder's absolute path; a stream's URL
    without its user name and password (a gallery must not keep camera credentials)."""
    if is_stream(source):
        parts = urlsplit(str(source))
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    return str(Path(source).expanduser().resolve())


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - the footage extra installs it
        raise CerberusError(
            "reading video needs PyAV: pip install 'cerberus-reid[footage]'"
        ) from None
    return av


def _start_seconds(start, what: str = "--start") -> float | None:
    if start is None:
        return None
    try:
        return to_utc_seconds(start, what)
    except StoreError as exc:
        raise CerberusError(str(exc)) from None


@dataclass
class VideoSource:
    """An opened source (see :func:`open_source`).

    Attributes:
        name: its stored name (:func:`source_name`).
        kind: ``"file"``, ``"mot"`` or ``"stream"``.
        fps: frames per second (``None`` where the source does not say).
        size: ``(width, height)`` of its frames, where known before decoding.
        num_frames: frame count where known (a MOTChallenge ``seqLength``, a container's count).
        start: UTC seconds of frame 1 (``None``: unknown; a stream's frames carry the wall
            clock).
    """

    location: str
    name: str
    kind: str
    fps: float | None = None
    size: tuple[int, int] | None = None
    num_frames: int | None = None
    start: float | None = None
    reconnect: int = 3
    folder: Path | None = None
    extension: str = ".jpg"
    decoded: int = 0
    """The number of the last frame decoded so far (strided-over frames included)."""
    dropped: str = ""
    """Why a stream ended without being stopped (empty while it runs or when stopped)."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self) -> None:
        """Stop following a stream (thread-safe): :meth:`frames` ends after the current frame."""
        self._stop.set()

    def frames(self, stride: int = 1) -> Iterator[Frame]:
        """The frames in order; with ``stride`` n only frames 1, 1 + n, 1 + 2n, ... (the others
        are decoded, as inter-coded video needs, but not converted to RGB)."""
        if stride < 1:
            raise CerberusError(f"--stride {stride}: must be at least 1")
        if self.kind == "mot":
            yield from self._mot_frames(stride)
        elif self.kind == "file":
            yield from self._file_frames(stride)
        else:
            yield from self._stream_frames(stride)

    # ---- a MOTChallenge folder

    def _mot_frames(self, stride: int) -> Iterator[Frame]:
        from PIL import Image

        for number in range(1, (self.num_frames or 0) + 1):
            if self._stop.is_set():
                return
            self.decoded = number
            if (number - 1) % stride:
                continue
            path = self.folder / "img1" / f"{number:06d}{self.extension}"
            try:
                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise CerberusError(f"{path}: frame {number} unreadable ({exc})") from None
            offset = (number - 1) / self.fps
            yield Frame(number, offset, self._time(offset), image)

    def _time(self, offset: float) -> float:
        return math.nan if self.start is None else self.start + offset

    # ---- a video file

    def _file_frames(self, stride: int) -> Iterator[Frame]:
        container = _open_container(self.location, stream=False)
        try:
            video = container.streams.video[0]
            video.thread_type = "AUTO"
            first = _first_pts(video)
            last = 0
            count = 0
            try:
                for frame in container.decode(video):
                    count += 1
                    offset = _offset(frame, first, count, self.fps)
                    number = _number(offset, self.fps, count)
                    if number <= last:
                        # two frames on one number (irregular timing): the first is kept, the
                        # frame read_frame finds for that number (a bump would shift the rest)
                        continue
                    last = self.decoded = number
                    if (number - 1) % stride:
                        continue
                    yield Frame(
                        number, offset, self._time(offset), frame.to_ndarray(format="rgb24")
                    )
                    if self._stop.is_set():
                        return
            except _av().error.FFmpegError as exc:
                if count == 0:
                    raise CerberusError(
                        f"{self.location}: no frame could be decoded ({_reason(exc)})"
                    ) from None
                logger.warning(
                    "%s: decoding stopped after frame %d (%s); the frames before it are used",
                    self.location,
                    last,
                    _reason(exc),
                )
            if count == 0:
                raise CerberusError(f"{self.location}: the video holds no frame")
        finally:
            container.close()

    # ---- a live stream

    def _stream_frames(self, stride: int) -> Iterator[Frame]:
        av = _av()
        count = 0
        failures = 0
        reason = lost = ""
        t0 = None
        while not self._stop.is_set():
            got = 0
            try:
                container = _open_container(self.location, stream=True)
            except CerberusError as exc:
                reason = str(exc).split(": ", 1)[-1]
            else:
                try:
                    video = container.streams.video[0]
                    for frame in container.decode(video):
                        count += 1
                        got += 1
                        self.decoded = count
                        now = time.time()
                        t0 = now if t0 is None else t0
                        if (count - 1) % stride == 0:
                            stamp = now if self.start is None else self.start + (now - t0)
                            image = frame.to_ndarray(format="rgb24")
                            yield Frame(count, now - t0, stamp, image)
                        if self._stop.is_set():
                            return
                    reason = "the stream ended"
                except av.error.FFmpegError as exc:
                    reason = _reason(exc)
                finally:
                    container.close()
            if self._stop.is_set():
                return
            if got:
                failures, lost = 0, reason
            else:
                failures += 1
            if (self.reconnect == 0) if got else (failures >= self.reconnect):
                tried = f"; {self.reconnect} reconnect(s) failed" if self.reconnect else ""
                first = lost if count else reason
                last = f" ({reason})" if self.reconnect and count and reason != first else ""
                self.dropped = f"{first}{tried}{last}; {count} frame(s) received"
                logger.warning("%s: stream over: %s", self.name, self.dropped)
                return
            logger.warning(
                "%s: %s; reconnecting (%d/%d)", self.name, reason, failures + 1, self.reconnect
            )
            self._stop.wait(min(0.5 * 2**failures, 5.0))


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _first_pts(video) -> int | None:
    return video.start_time if video.start_time is not None else None


def _offset(frame, first: int | None, count: int, fps: float | None) -> float:
    """Seconds since the first frame: from the pts where there is one, else from the count."""
    if frame.pts is not None and frame.time_base is not None:
        return float((frame.pts - (first or 0)) * frame.time_base)
    return (count - 1) / fps if fps else float(count - 1)


def _number(offset: float, fps: float | None, count: int) -> int:
    return int(round(offset * fps)) + 1 if fps else count


def _open_container(location: str, *, stream: bool):
    """``av.open`` with the timeouts a network source needs; FFmpeg's errors as one line."""
    av = _av()
    options = {"rw_timeout": str(int(READ_TIMEOUT_S * 1e6))} if stream else {}
    if stream and location.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"
    try:
        container = av.open(
            location, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S) if stream else None
        )
    except av.error.FileNotFoundError:
        raise CerberusError(f"{location}: no such file") from None
    except av.error.FFmpegError as exc:
        if stream:
            raise CerberusError(f"{location}: could not open the stream ({_reason(exc)})") from None
        raise CerberusError(
            f"{location}: not a video FFmpeg can read (corrupt, truncated or not a video?): "
            f"{_reason(exc)}"
        ) from None
    try:
        if not container.streams.video:
            raise CerberusError(f"{location}: has no video stream")
        video = container.streams.video[0]
        codec = video.codec_context
        if codec is None or not getattr(codec, "name", ""):
            tag = getattr(codec, "codec_tag", "") if codec is not None else ""
            raise CerberusError(
                f"{location}: its video codec{f' {tag!r}' if tag else ''} cannot be decoded "
                "by this FFmpeg build"
            )
    except CerberusError:
        container.close()
        raise
    return container


def open_source(
    source: str | Path,
    *,
    start=None,
    reconnect: int = 3,
) -> VideoSource:
    """Open a video file, a MOTChallenge folder or a live stream URL (see the module doc).

    Args:
        source: a path or a URL.
        start: time of the first frame (aware ``datetime``, ISO-8601 string with an offset, or
            UTC seconds); ``None``: the container's creation time where there is one.
        reconnect: a stream that drops is reopened up to this many times in a row before its
            end is declared (the reason is kept in :attr:`VideoSource.dropped`).

    Raises:
        CerberusError: one line naming the source (missing, not a video, no video stream, a
            codec this FFmpeg cannot decode, a MOTChallenge folder without a readable
            ``seqinfo.ini``).
    """
    start_s = _start_seconds(start)
    if is_stream(source):
        return VideoSource(
            str(source), source_name(source), "stream", start=start_s, reconnect=reconnect
        )
    path = Path(source).expanduser()
    if path.is_dir():
        return _open_mot_folder(path, start_s)
    if not path.exists():
        raise CerberusError(f"{path}: no such file")
    container = _open_container(str(path), stream=False)
    try:
        video = container.streams.video[0]
        fps = float(video.average_rate) if video.average_rate else None
        size = (video.codec_context.width, video.codec_context.height)
        frames = int(video.frames) or None
        if start_s is None:
            created = container.metadata.get("creation_time") or video.metadata.get("creation_time")
            if created:
                try:
                    start_s = to_utc_seconds(created, "creation_time")
                    logger.info(
                        "%s: frame times from the container's creation time %s "
                        "(give --start to set them)",
                        path,
                        created,
                    )
                except StoreError:
                    logger.info("%s: creation time %r not understood; ignored", path, created)
            if start_s is None:
                logger.info(
                    "%s: no --start and no creation time in the file: its items have no time "
                    "(give --start to search it by time)",
                    path,
                )
    finally:
        container.close()
    return VideoSource(str(path), source_name(path), "file", fps, size, frames, start_s)


def _open_mot_folder(folder: Path, start: float | None) -> VideoSource:
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        raise CerberusError(
            f"{folder}: a folder source must be a MOTChallenge sequence (img1/ and seqinfo.ini); "
            "seqinfo.ini not found"
        )
    parser = configparser.ConfigParser()
    try:
        parser.read(ini)
        seq = parser["Sequence"]
        fps = float(seq["frameRate"])
        length = int(seq["seqLength"])
        size = (int(seq["imWidth"]), int(seq["imHeight"]))
        ext = seq.get("imExt", ".jpg")
        img_dir = seq.get("imDir", "img1")
    except (configparser.Error, KeyError, ValueError) as exc:
        raise CerberusError(
            f"{ini}: not a MOTChallenge seqinfo.ini (needs [Sequence] frameRate, seqLength, "
            f"imWidth, imHeight: {_reason(exc)})"
        ) from None
    if not fps > 0 or length < 1:
        raise CerberusError(f"{ini}: frameRate {fps} / seqLength {length} must be positive")
    if img_dir != "img1":
        raise CerberusError(f"{ini}: imDir {img_dir!r}: only img1 is read")
    if not (folder / "img1" / f"{1:06d}{ext}").is_file():
        raise CerberusError(f"{folder / 'img1'}: frame 000001{ext} not found")
    if start is None:
        logger.info("%s: no --start: its items have no time (give --start)", folder)
    return VideoSource(
        str(folder),
        source_name(folder),
        "mot",
        fps,
        size,
        length,
        start,
        folder=folder,
        extension=ext,
    )


def read_frame(source: str | Path, number: int) -> np.ndarray:
    """Frame ``number`` (1-based, as stored in a gallery item) of a video file or a
    MOTChallenge folder, ``(H, W, 3)`` uint8 RGB (what the page shows with the item's box).

    A file is sought to the key frame before the frame's time and decoded from there.
    """
    if number < 1:
        raise CerberusError(f"frame {number}: frame numbers start at 1")
    if is_stream(source):
        raise CerberusError(f"{source_name(source)}: a live stream's frames are not kept")
    opened = open_source(source) if Path(source).is_dir() else None
    if opened is not None:
        if number > opened.num_frames:
            raise CerberusError(f"{source}: frame {number} beyond its {opened.num_frames} frames")
        from PIL import Image

        path = opened.folder / "img1" / f"{number:06d}{opened.extension}"
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise CerberusError(f"{path}: frame {number} unreadable ({exc})") from None
    path = Path(source)
    if not path.is_file():
        raise CerberusError(f"{path}: no such file")
    container = _open_container(str(path), stream=False)
    try:
        video = container.streams.video[0]
        fps = float(video.average_rate) if video.average_rate else None
        first = _first_pts(video)
        if fps and video.time_base:
            target = (first or 0) + int((number - 1) / fps / video.time_base)
            try:
                container.seek(max(target - 1, 0), backward=True, any_frame=False, stream=video)
            except _av().error.FFmpegError:
                container.seek(0)
        count = 0
        for frame in container.decode(video):
            count += 1
            n = _number(_offset(frame, first, count, fps), fps, count)
            if n >= number:
                return frame.to_ndarray(format="rgb24")
    except _av().error.FFmpegError as exc:
        raise CerberusError(
            f"{path}: frame {number} could not be decoded ({_reason(exc)})"
        ) from None
    finally:
        container.close()
    raise CerberusError(f"{path}: frame {number} beyond the end of the video")
