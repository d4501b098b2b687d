"""The camera list of ``cerberus watch`` (method §9.3): which cameras one process follows, each
with its source, clock, detector and how long its people are kept.

A YAML file::

    defaults:                    # optional: any camera key, for every camera
      detector: ssdlite
      stride: 4
      retention: 7d
    cameras:
      - name: entrance           # the camera name stored with every item (unique)
        source: /videos/entrance.mp4   # a video file, a MOTChallenge folder or a stream URL
        start: 2026-11-30T14:00:00     # the first frame's time; without an offset it is read
        timezone: Europe/Paris         #   in this IANA time zone (default UTC)
      - name: gate
        source: rtsp://10.0.0.5/stream1
        timezone: Europe/Paris
        retention: 30d           # items older than this (by the wall clock) are removed

Keys per camera: ``name``, ``source`` (required), ``start``, ``timezone``, ``detector`` (a spec
as ``--detector``), ``detector_score``, ``detections`` (a MOTChallenge file, replacing the
detector), ``stride``, ``crops_per_minute``, ``max_crops``, ``retention`` (a duration: a number
of seconds or ``90s``, ``45m``, ``12h``, ``30d``, ``2w``; none: kept for ever). Relative paths
are read from the list's folder. A bad list is one line naming the file and the key
(:func:`load_cameras`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from cerberus.errors import CerberusError, shown
from cerberus.footage.video import is_stream

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
"""Seconds per unit of a duration (``45m``, ``30d``)."""


@dataclass(frozen=True)
class Camera:
    """One camera of the list (see the module doc for the keys).

    Attributes:
        start: UTC seconds of the first frame (``None``: the file's creation time, a stream's
            arrival times).
        zone: the camera's time zone (``start`` without an offset is read in it; progress
            lines show the camera's times in it).
        retention: seconds an item is kept (by its time, against the wall clock); ``None``:
            for ever.
    """

    name: str
    source: str
    start: float | None = None
    zone: tzinfo = ZoneInfo("UTC")
    detector: str | None = None
    detector_score: float | None = None
    detections: str | None = None
    stride: int | None = None
    crops_per_minute: float = 30.0
    max_crops: int | None = None
    retention: float | None = None

    @property
    def live(self) -> bool:
        """Whether the source is a stream (followed until stopped)."""
        return is_stream(self.source)

    def local_time(self, seconds: float) -> str:
        """``seconds`` (UTC since the epoch) as the camera's local time with its offset."""
        if seconds is None or not math.isfinite(seconds):
            return "no time"
        return datetime.fromtimestamp(seconds, self.zone).isoformat(timespec="seconds")


KEYS = tuple(f.name for f in fields(Camera) if f.name not in ("zone",)) + ("timezone",)


def parse_duration(value: Any, where: str) -> float:
    """Seconds of a duration: a number (seconds) or ``<number><s|m|h|d|w>``; positive."""
    if isinstance(value, bool):
        raise CerberusError(f"{where}: {value!r} is not a duration (e.g. 3600, 12h, 30d)")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value).lower())
        if not match:
            raise CerberusError(
                f"{where}: {shown(value)} is not a duration (a number of seconds, or e.g. 90s, "
                "45m, 12h, 30d, 2w)"
            )
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not seconds > 0 or not math.isfinite(seconds):
        raise CerberusError(f"{where}: {shown(value)} must be a positive duration")
    return seconds


def _zone(value: Any, where: str) -> tzinfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise CerberusError(
            f"{where}: {shown(value)} is not a time zone (an IANA name such as Europe/Paris or UTC)"
        ) from None


def _start(value: Any, zone: tzinfo, where: str) -> float:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            text = str(value).strip()
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
        except ValueError:
            raise CerberusError(
                f"{where}: {shown(value)} is not an ISO-8601 time (e.g. 2026-11-30T14:00:00, "
                "read in the camera's timezone, or with an offset: 2026-11-30T14:00:00+01:00)"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def _number(value: Any, kind: type, where: str, low: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CerberusError(f"{where}: {shown(value)} is not a number")
    if kind is int and float(value) != int(value):
        raise CerberusError(f"{where}: {shown(value)} must be a whole number")
    if not value >= low:
        raise CerberusError(f"{where}: {value} must be at least {low:g}")
    return kind(value)


def _camera(entry: Any, where: str, folder: Path) -> Camera:
    if not isinstance(entry, dict):
        raise CerberusError(f"{where}: a camera is a mapping of keys (name, source, ...)")
    unknown = sorted(set(map(str, entry)) - set(KEYS))
    if unknown:
        raise CerberusError(
            f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(KEYS))})"
        )
    for key in ("name", "source"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise CerberusError(f"{where}.{key}: required (a non-empty text)")
    zone = _zone(entry["timezone"], f"{where}.timezone") if "timezone" in entry else ZoneInfo("UTC")
    source = entry["source"].strip()
    if not is_stream(source):
        path = Path(source).expanduser()
        source = str(path if path.is_absolute() else folder / path)
    values: dict[str, Any] = {"name": entry["name"].strip(), "source": source, "zone": zone}
    if entry.get("start") is not None:
        values["start"] = _start(entry["start"], zone, f"{where}.start")
    for key in ("detector", "detections"):
        if entry.get(key) is not None:
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise CerberusError(f"{where}.{key}: {shown(entry[key])} is not a text")
            values[key] = entry[key].strip()
    if values.get("detections"):
        path = Path(values["detections"]).expanduser()
        values["detections"] = str(path if path.is_absolute() else folder / path)
        if values.get("detector"):
            raise CerberusError(f"{where}.detections: replaces the detector; give one of them")
    checks = {"detector_score": (float, 0.0), "stride": (int, 1), "crops_per_minute": (float, 0.01),
              "max_crops": (int, 1)}  # fmt: skip
    for key, (kind, low) in checks.items():
        if entry.get(key) is not None:
            values[key] = _number(entry[key], kind, f"{where}.{key}", low)
    if entry.get("retention") is not None:
        values["retention"] = parse_duration(entry["retention"], f"{where}.retention")
    return Camera(**values)


def load_cameras(path: str | Path) -> list[Camera]:
    """The cameras of the YAML list at ``path`` (see the module doc), each checked.

    Raises:
        CerberusError: one line naming the file and the key (``cameras.yaml: cameras[1].
            timezone: ...``): a missing or unreadable file, not YAML, no cameras, an unknown
            or missing key, a bad value, two cameras of one name.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CerberusError(f"{path}: no such camera list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CerberusError(f"{path}: unreadable camera list ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise CerberusError(f"{path}: not valid YAML{at}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise CerberusError(f"{path}: cameras: required, a list of cameras (see docs/footage.md)")
    unknown = sorted(set(map(str, data)) - {"cameras", "defaults"})
    if unknown:
        raise CerberusError(f"{path}: {unknown[0]}: unknown key (known: cameras, defaults)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise CerberusError(f"{path}: defaults: a mapping of camera keys")
    if not data["cameras"]:
        raise CerberusError(f"{path}: cameras: the list is empty")
    folder = path.absolute().parent
    cameras, seen = [], set()
    for i, entry in enumerate(data["cameras"]):
        where = f"{path}: cameras[{i}]"
        if isinstance(entry, dict):
            entry = {**defaults, **entry}
        try:
            camera = _camera(entry, where, folder)
        except CerberusError as exc:
            text = str(exc)
            for key in map(str, defaults):  # a bad default is named as such
                if text.startswith(f"{where}.{key}:") and key not in data["cameras"][i]:
                    text = f"{path}: defaults.{key}:" + text[len(f"{where}.{key}:") :]
            raise CerberusError(text) from None
        if camera.name in seen:
            raise CerberusError(f"{where}.name: {camera.name!r} is given twice; names are unique")
        seen.add(camera.name)
        cameras.append(camera)
    return cameras
