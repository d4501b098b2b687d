"""Frames of a source, method §9.3: a video file FFmpeg decodes (PyAV), a MOTChallenge folder
(``img1/000001.jpg`` + ``seqinfo.ini``), an http(s) URL of a file (its duration known: read
once, resumed after its last frame when the connection drops) or a live stream (``rtsp://``,
``http://`` without a duration; followed with reconnections).

Every frame comes as a :class:`Frame`: its number (1-based, as in the MOTChallenge files: frame
1 is the first), its offset in seconds from the source's first frame, its UTC time and its RGB
pixels. Times:

- a file: ``pts * time_base`` from the first frame (the pts sorted over a few frames: the
  decoder gives frames in presentation order, some containers' pts out of order), plus
  ``start`` (``--start``); without
  ``start``, the container's ``creation_time`` when it has one (said in a log line), else the
  frames have no time (``nan``; a log line says to give ``--start``);
- a MOTChallenge folder: ``(number - 1) / frameRate`` plus ``start`` (else no time);
- a live stream: the wall clock when its connection's first frame arrived plus the stream's
  own clock since (pts), never at or before the last frame given (``start`` given: ``start``
  plus the time since the first frame).

A file's frame number is computed from its pts (``round(offset * fps) + 1``), so
:func:`read_frame` can seek to it; a stream's is the count of frames received, running on
across reconnections (and after :meth:`VideoSource.resume`). A file that stops decoding early
sets :attr:`VideoSource.damage`.
"""

from __future__ import annotations

import configparser
import heapq
import logging
import math
import threading
import time
from collections import deque
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


def source_location(name: str) -> str:
    """The file, folder or URL of a stored source name: ``<path>#<camera>`` (one file stored
    under a second camera) is ``<path>``."""
    if "#" in name and not is_stream(name) and not Path(name).exists():
        return name.rsplit("#", 1)[0]
    return name


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
    remote: bool = False
    """A finite file read over http(s) (read once; a dropped connection resumes after the last
    frame received)."""
    backoff: float = 0.5
    """Seconds before the first reconnection after a drop (doubled per failure, at most 5)."""
    expected: int | None = None
    """Frames a file should give (its count, else duration x fps): fewer means damaged."""
    damage: str = ""
    """Set when the frames end: which frames decoded, of how many, and why the rest did not
    (``"frames 1-139 of 300 decoded (...)"``); empty for a whole source."""
    gaps: list[tuple[int, float]] = field(default_factory=list)
    """A stream's gaps: (the last frame before it, seconds without frames)."""
    after: tuple[int, float] = (0, -math.inf)
    """Frames numbered at or below ``after[0]`` (a file) or timed at or before ``after[1]``
    (a stream) are already stored: see :meth:`resume`."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _opened: object = field(default=None, repr=False)  # a stream's first connection, if open
    _bad_packets: int = field(default=0, repr=False)
    _bad_reason: str = field(default="", repr=False)

    def stop(self) -> None:
        """Stop following a stream (thread-safe): :meth:`frames` ends after the current frame."""
        self._stop.set()

    def resume(self, number: int, timestamp: float = -math.inf) -> None:
        """Continue after frame ``number`` (time ``timestamp``, UTC seconds), what a gallery
        already holds: a file or folder gives only frames numbered above it; a stream numbers
        its frames from ``number + 1`` and times them after ``timestamp``."""
        self.after = (int(number), float(timestamp))

    def frames(self, stride: int = 1) -> Iterator[Frame]:
        """The frames in presentation order; with ``stride`` n only frames 1, 1 + n, 1 + 2n, ...
        (the others are decoded, as inter-coded video needs, but not converted to RGB)."""
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

        total = self.num_frames or 0
        bad: list[int] = []
        for number in range(self.after[0] + 1, total + 1):
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
                bad.append(number)
                logger.warning("%s: frame %d skipped (%s)", path, number, _reason(exc))
                continue
            offset = (number - 1) / self.fps
            yield Frame(number, offset, self._time(offset), image)
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            self.damage = (
                f"{total - len(bad)} of {total} frames read; frame(s) {shown} missing or "
                "unreadable"
            )
            logger.warning("%s: %s", self.location, self.damage)

    def _time(self, offset: float) -> float:
        return math.nan if self.start is None else self.start + offset

    # ---- a video file (on disk, or a finite one over http)

    def _file_frames(self, stride: int) -> Iterator[Frame]:
        av = _av()
        last = self.after[0]  # the last frame given (or already stored)
        origin: int | None = None  # pts of frame 1
        count = 0  # frames decoded in all
        distinct = 0  # frames given a number of their own
        failures = 0
        reason = ""
        seekable = True  # until a seek fails
        while True:
            try:
                container = _open_container(self.location, stream=self.remote)
            except CerberusError as exc:
                if not self.remote or failures >= self.reconnect:
                    raise
                reason = str(exc).split(": ", 1)[-1]
                container = None
            try:
                if container is None:
                    raise _ReopenError(reason)
                video = container.streams.video[0]
                video.thread_type = "AUTO"
                if self.expected is None:  # the frame count, else duration x fps
                    duration = container.duration
                    self.expected = self.num_frames or (
                        round(duration / 1e6 * self.fps) if duration and self.fps else None
                    )
                if last and self.remote and origin is not None and self.fps and seekable:
                    if not _seek(container, video, origin, last - 1, self.fps):
                        # a failed seek may leave the reader anywhere (at the end): opened
                        # again and read from the start, the frames already given skipped
                        seekable = False
                        continue
                n = 0
                for frame, pts in _in_order(_decoded(container, video, self)):
                    n += 1
                    count += 1
                    if origin is None:
                        origin = pts
                    offset = _offset(pts, frame.time_base, origin, n, self.fps)
                    number = _number(offset, self.fps, n)
                    if number <= last:
                        # already given (a resumed connection), or two frames on one number
                        # (irregular timing): the first is kept, the frame read_frame finds
                        continue
                    last = self.decoded = number
                    distinct += 1
                    if (number - 1) % stride:
                        continue
                    yield Frame(
                        number, offset, self._time(offset), frame.to_ndarray(format="rgb24")
                    )
                    if self._stop.is_set():
                        return
                reason = ""
            except (av.error.FFmpegError, _ReopenError) as exc:
                reason = _reason(exc)
            finally:
                if container is not None:
                    container.close()
            if not reason or not self.remote or failures >= self.reconnect:
                break
            failures += 1
            logger.warning(
                "%s: connection lost after frame %d (%s); reconnecting (%d/%d), resuming after "
                "frame %d",
                self.name, last, reason, failures, self.reconnect, last,
            )  # fmt: skip
            if self._stop.wait(min(self.backoff * 2 ** (failures - 1), 5.0)):
                return
        if count == 0:
            why = reason or self._bad_reason
            why = f" ({why})" if why else ""
            raise CerberusError(f"{self.location}: no frame could be decoded{why}")
        expected = self.expected
        if self._bad_packets:
            reason = "; ".join(filter(None, [reason, f"{self._bad_packets} packet(s) did not "
                                             f"decode: {self._bad_reason}"]))  # fmt: skip
        missing = expected is not None and distinct + self.after[0] < expected - 1
        if reason or missing:
            of = f" of {expected}" if expected else ""
            if expected and last >= expected - 1:  # frames missing in the middle
                why = reason or "frames missing in the middle"
                self.damage = f"{distinct + self.after[0]}{of} frames decoded ({why})"
            else:
                why = reason or "the file ends early: truncated?"
                self.damage = f"frames 1-{last}{of} decoded ({why})"
            logger.warning(
                "%s: damaged: %s; the frames before are used", self.location, self.damage
            )

    # ---- a live stream

    def _stream_frames(self, stride: int) -> Iterator[Frame]:
        av = _av()
        number, last_time = self.after
        received = 0
        failures = 0
        reason = lost = ""
        first_wall = None  # wall clock of the first frame (for ``start``)
        previous_first = None  # the first pts of the previous connection
        last_pts = None
        lost_at = None  # wall clock when the last connection was lost
        while not self._stop.is_set():
            got = 0
            try:
                container, self._opened = self._opened, None
                if container is None:
                    container = _open_container(self.location, stream=True)
            except CerberusError as exc:
                reason = str(exc).split(": ", 1)[-1]
            else:
                try:
                    video = container.streams.video[0]
                    fps = float(video.average_rate) if video.average_rate else None
                    session_first = anchor = None
                    replay = False
                    decoded = _decoded(container, video, self)  # bad packets skipped
                    for frame, pts in _in_order(decoded, STREAM_WINDOW):
                        if session_first is None:
                            session_first = pts
                            # the same content from its start (a server replaying a file)
                            replay = pts is not None and pts == previous_first
                            previous_first = pts
                        if replay and last_pts is not None and pts <= last_pts:
                            continue  # received already
                        now = time.time()
                        if anchor is None:
                            anchor = (now, pts)
                            if lost_at is not None:
                                self.gaps.append((number, now - lost_at))
                                logger.warning(
                                    "%s: stream back after %.1f s without frames (from frame "
                                    "%d)", self.name, now - lost_at, number + 1,
                                )  # fmt: skip
                        if pts is not None and frame.time_base is not None:
                            # the arrival of the connection's first frame plus the stream's
                            # own clock (frames come in bursts; their pts are evenly spaced)
                            now = anchor[0] + float((pts - anchor[1]) * frame.time_base)
                        first_wall = now if first_wall is None else first_wall
                        stamp = now if self.start is None else self.start + (now - first_wall)
                        if stamp <= last_time:  # never at or before a stored frame
                            stamp = last_time + 1.0 / (fps or 25.0)
                        last_time = stamp
                        last_pts = pts if pts is not None else last_pts
                        number += 1
                        received += 1
                        got += 1
                        self.decoded = number
                        if (number - 1) % stride == 0:
                            image = frame.to_ndarray(format="rgb24")
                            yield Frame(number, now - first_wall, stamp, image)
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
                lost_at = time.time()
            else:
                failures += 1
            if (self.reconnect == 0) if got else (failures >= self.reconnect):
                tried = f"; {self.reconnect} reconnect(s) failed" if self.reconnect else ""
                first = lost if received else reason
                last = f" ({reason})" if self.reconnect and received and reason != first else ""
                self.dropped = f"{first}{tried}{last}; {received} frame(s) received"
                logger.warning("%s: stream over: %s", self.name, self.dropped)
                return
            wait = min(self.backoff * 2**failures, 5.0)
            logger.warning(
                "%s: %s after frame %d; reconnecting in %.1f s (%d/%d)",
                self.name, reason, number, wait, failures + 1, self.reconnect,
            )  # fmt: skip
            self._stop.wait(wait)


class _ReopenError(Exception):
    """A finite file over http could not be reopened (tried again up to the limit)."""


def _decoded(container, video, owner: VideoSource):
    """The frames of ``video`` packet by packet: a packet that does not decode (damaged data)
    is skipped and counted on ``owner``; an error of the demuxer (the file ends) stops."""
    av = _av()
    for packet in container.demux(video):
        try:
            frames = packet.decode()
        except av.error.EOFError:
            return
        except av.error.FFmpegError as exc:
            owner._bad_packets += 1
            owner._bad_reason = owner._bad_reason or _reason(exc)
            continue
        yield from frames


STREAM_WINDOW = 4
"""Frames a live stream's times are sorted over (a small delay: B-frames of a camera are few)."""


def _in_order(frames, window: int = 16):
    """``(frame, pts)`` of decoded frames in the order the decoder gives them (presentation
    order), each given the smallest pts not yet given among a ``window`` of them: a container
    that stores decode times as presentation times (AVI with B-frames) gives them out of order,
    and the sorted pts are the frames' true times. An error of the decoder comes after the
    frames before it."""
    queue: deque = deque()
    heap: list[int] = []
    error = None
    try:
        for frame in frames:
            queue.append(frame)
            if frame.pts is not None:
                heapq.heappush(heap, frame.pts)
            if len(queue) > window:
                yield queue.popleft(), (heapq.heappop(heap) if heap else None)
    except _av().error.FFmpegError as exc:
        error = exc
    while queue:
        yield queue.popleft(), (heapq.heappop(heap) if heap else None)
    if error is not None:
        raise error


def _seek(container, video, origin: int, number: int, fps: float) -> bool:
    """Seek to the key frame at or before frame ``number`` (from there the frames are decoded
    and those already given skipped). False where the seek failed: FFmpeg's search for a
    time in an MPEG-TS file over http can fail part way (EPERM) and leave the reader at the end,
    so the caller reads from the start instead. True without a seek where the stream has no
    time base (the reader stays at the start)."""
    if not video.time_base:
        return True
    target = origin + int((number - 1) / fps / video.time_base)
    try:
        container.seek(max(target, 0), backward=True, any_frame=False, stream=video)
    except _av().error.FFmpegError:
        return False
    return True


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _offset(pts, time_base, origin, count: int, fps: float | None) -> float:
    """Seconds since frame 1: from the pts where there is one, else from the count."""
    if pts is not None and time_base is not None and origin is not None:
        return float((pts - origin) * time_base)
    return (count - 1) / fps if fps else float(count - 1)


def _number(offset: float, fps: float | None, count: int) -> int:
    return int(round(offset * fps)) + 1 if fps else count


def _open_container(location: str, *, stream: bool):
    """``av.open`` with the timeouts a network source needs; FFmpeg's errors as one line."""
    av = _av()
    options = {"rw_timeout": str(int(READ_TIMEOUT_S * 1e6))} if stream else {}
    if stream and location.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"
    if stream and location.lower().startswith(("http:", "https:")):
        # keep-alive: FFmpeg asks "Connection: close" by default, then sends a seek's request
        # (an MPEG-TS file's duration is read near its end) on that connection when the answer
        # did not repeat "close", and finds it shut: the seek fails, the file reads as empty
        options["multiple_requests"] = "1"
    try:
        container = av.open(
            location, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S) if stream else None
        )
    except av.error.FileNotFoundError:
        raise CerberusError(f"{location}: no such file") from None
    except av.error.FFmpegError as exc:
        if stream:  # named without the user name and password it may hold
            raise CerberusError(
                f"{source_name(location)}: could not open the stream ({_reason(exc)})"
            ) from None
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
    backoff: float = 0.5,
) -> VideoSource:
    """Open a video file, a MOTChallenge folder or a stream URL (see the module doc).

    A URL is tried at once (a source that cannot be opened is an error, before any model is
    loaded); an http(s) URL whose duration FFmpeg finds (a file a web server serves) is a
    finite file, read once; any other URL is a live stream, followed until stopped.

    Args:
        source: a path or a URL.
        start: time of the first frame (aware ``datetime``, ISO-8601 string with an offset, or
            UTC seconds); ``None``: the container's creation time where there is one.
        reconnect: a stream that drops is reopened up to this many times in a row without a
            frame before its end is declared (the reason is kept in
            :attr:`VideoSource.dropped`); a finite file over http resumes after its last frame
            up to this many times.
        backoff: seconds before the first reconnection (doubled each time, at most 5).

    Raises:
        CerberusError: one line naming the source (missing, not a video, a stream that
            cannot be opened, no video stream, a codec this FFmpeg cannot decode, a
            MOTChallenge folder without a readable ``seqinfo.ini``).
    """
    start_s = _start_seconds(start)
    if reconnect < 0:
        raise CerberusError(f"reconnect {reconnect}: must be 0 or more")
    if is_stream(source):
        return _open_url(str(source), start_s, reconnect, backoff)
    path = Path(source).expanduser()
    if path.is_dir():
        return _open_mot_folder(path, start_s)
    if not path.exists():
        raise CerberusError(f"{path}: no such file")
    fps, size, frames, start_s = _probe(str(path), start_s, stream=False)
    return VideoSource(str(path), source_name(path), "file", fps, size, frames, start_s)


def _open_url(url: str, start: float | None, reconnect: int, backoff: float) -> VideoSource:
    """A URL tried once: a finite file (an http(s) URL of known duration) or a live stream."""
    name = source_name(url)
    container = _open_container(url, stream=True)
    duration = container.duration
    if not (urlsplit(url).scheme.lower() in ("http", "https") and duration):
        video = container.streams.video[0]
        fps = float(video.average_rate) if video.average_rate else None
        size = (video.codec_context.width, video.codec_context.height)
        opened = VideoSource(url, name, "stream", fps, size, start=start, reconnect=reconnect,
                             backoff=backoff)  # fmt: skip
        opened._opened = container  # its first connection: frames() reads from it
        return opened
    try:
        fps, size, frames, start = _describe(container, name, start)
    finally:
        container.close()
    logger.info("%s: a file of %.1f s over http: read once", name, duration / 1e6)
    return VideoSource(url, name, "file", fps, size, frames, start, reconnect=reconnect,
                       remote=True, backoff=backoff)  # fmt: skip


def _probe(location: str, start_s: float | None, *, stream: bool):
    """:func:`_describe` of the file at ``location``."""
    container = _open_container(location, stream=stream)
    try:
        return _describe(container, location, start_s)
    finally:
        container.close()


def _describe(container, shown: str, start_s: float | None):
    """``(fps, (width, height), frame count or None, start)`` of an opened video file: the
    frame count where the container says it; the start from the creation time where
    ``start_s`` is ``None``."""
    video = container.streams.video[0]
    rate = video.average_rate or video.guessed_rate
    fps = float(rate) if rate else None
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
                    shown,
                    created,
                )
            except StoreError:
                logger.info("%s: creation time %r not understood; ignored", shown, created)
        if start_s is None:
            logger.info(
                "%s: no --start and no creation time in the file: its items have no time "
                "(give --start to search it by time)",
                shown,
            )
    return fps, size, frames, start_s


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
    fps = origin = None
    container = _open_container(str(path), stream=False)
    try:
        video = container.streams.video[0]
        fps = float(video.average_rate) if video.average_rate else None
        for _, pts in _in_order(container.decode(video)):
            origin = pts  # the pts of frame 1: the smallest of the first frames
            break
        if fps and origin is not None:
            _seek(container, video, origin, number - 1, fps)
        else:
            container.seek(0)
        for attempt in range(2):
            count = 0
            for frame, pts in _in_order(container.decode(video)):
                count += 1
                n = _number(_offset(pts, frame.time_base, origin, count, fps), fps, count)
                if n == number or (n > number and (attempt or count > 1)):
                    return frame.to_ndarray(format="rgb24")
                if n > number:  # the seek landed past the frame (inexact in some containers)
                    break
            else:
                if attempt:
                    break  # the end of the video
            container.close()  # again from the start
            container = _open_container(str(path), stream=False)
            video = container.streams.video[0]
    except _av().error.FFmpegError as exc:
        raise CerberusError(
            f"{path}: frame {number} could not be decoded ({_reason(exc)})"
        ) from None
    finally:
        container.close()
    raise CerberusError(f"{path}: frame {number} beyond the end of the video")
