"""Commands about datasets: ``synth`` and ``check-data``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cerberus.cli._app import (
    app,
    at_least,
)
from cerberus.errors import CerberusError

synth_app = typer.Typer(
    help="Generate synthetic data: the crop benchmark (cerberus synth --out DIR), or camera "
    "footage with ground truth (cerberus synth footage --out DIR).",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)
app.add_typer(synth_app, name="synth")


@synth_app.callback()
def synth(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
    data_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="market: Market-1501 folders + market_attribute.mat; table: the same crops "
            "with images.csv, attributes.csv and schema.yaml (docs/data.md).",
        ),
    ] = "market",
    camera_column: Annotated[
        bool,
        typer.Option(
            "--camera-column/--no-camera-column",
            help="table: write the camera_id column (--no-camera-column: cameras unknown).",
        ),
    ] = True,
    train_ids: Annotated[int, typer.Option(help="Number of training identities.")] = 200,
    test_ids: Annotated[int, typer.Option(help="Number of test identities.")] = 200,
    cameras: Annotated[int, typer.Option(help="Number of cameras.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed, 0 or more (same seed, same files).")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    sheet: Annotated[
        Path | None, typer.Option(help="Also save a contact sheet of identities (PNG).")
    ] = None,
    value_sheet: Annotated[
        Path | None,
        typer.Option(help="Also save a sheet with one row per attribute value (PNG)."),
    ] = None,
) -> None:
    """Generate the built-in synthetic benchmark (Market-1501 layout, or a table dataset);
    ``synth footage``: camera footage with ground truth."""
    from cerberus.data.synthetic.benchmark import (
        generate_synthetic,
        make_contact_sheet,
        make_value_sheet,
        terminate_as_interrupt,
    )

    if ctx.invoked_subcommand is not None:
        if out is not None:
            raise CerberusError(
                f"synth --out {out} {ctx.invoked_subcommand}: give the options after "
                f"{ctx.invoked_subcommand!r} (cerberus synth {ctx.invoked_subcommand} --out DIR)"
            )
        return
    if out is None:
        raise CerberusError("synth: --out DIR is required (the output folder)")
    at_least("--workers", workers, 1)
    if data_format not in ("market", "table"):
        raise CerberusError(f"--format {data_format!r}: must be market or table")
    if not camera_column and data_format != "table":
        raise CerberusError("--no-camera-column needs --format table (Market names hold cameras)")
    with terminate_as_interrupt():  # SIGTERM cleans up like Ctrl-C
        summary = generate_synthetic(
            out,
            num_train_ids=train_ids,
            num_test_ids=test_ids,
            num_cameras=cameras,
            seed=seed,
            num_workers=workers,
            overwrite=overwrite,
            data_format=data_format,
            camera_column=camera_column,
        )
    if data_format == "table":
        typer.echo(f"wrote synthetic table dataset to {out}: {summary}")
        typer.echo(f"check it with: cerberus check-data {out}")
    else:
        typer.echo(f"wrote synthetic benchmark to {out}: {summary}")
    if sheet is not None:
        make_contact_sheet(out, sheet)
        typer.echo(f"contact sheet: {sheet}")
    if value_sheet is not None:
        make_value_sheet(out, value_sheet)
        typer.echo(f"value sheet: {value_sheet}")


@synth_app.command("footage")
def synth_footage(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    cameras: Annotated[int, typer.Option(help="Number of cameras (cam1, cam2, ...).")] = 3,
    seconds: Annotated[float, typer.Option(help="Length of each camera's video.")] = 40.0,
    people: Annotated[
        int, typer.Option(help="People who walk (the benchmark's first test identities).")
    ] = 30,
    size: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT.")] = "640x360",
    fps: Annotated[int, typer.Option(help="Frames per second.")] = 10,
    start: Annotated[
        str, typer.Option(help="Wall-clock time of the shared clock's start (ISO-8601 with zone).")
    ] = "2025-06-02T08:00:00Z",
    seed: Annotated[int, typer.Option(help="Random seed, 0 or more (same seed, same files).")] = 0,
    train_ids: Annotated[
        int, typer.Option(help="Training identities of the benchmark the people come from.")
    ] = 200,
    test_ids: Annotated[
        int, typer.Option(help="Test identities of that benchmark (the pool of people).")
    ] = 200,
    video: Annotated[
        bool, typer.Option("--video/--no-video", help="Write camN.mp4 (H.264).")
    ] = True,
    frames: Annotated[
        bool,
        typer.Option("--frames/--no-frames", help="Write camN/img1/000001.jpg (MOTChallenge)."),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
) -> None:
    """Synthetic camera footage with MOTChallenge ground truth (docs/synthetic.md)."""
    from cerberus.data.synthetic.benchmark import terminate_as_interrupt
    from cerberus.data.synthetic.footage import generate_footage, parse_size, parse_start
    from cerberus.data.synthetic.scene import FootageSpec

    width, height = parse_size(size)
    spec = FootageSpec(
        cameras=cameras,
        seconds=seconds,
        people=people,
        width=width,
        height=height,
        fps=fps,
        seed=seed,
        start=parse_start(start),
        train_ids=train_ids,
        test_ids=test_ids,
    )
    with terminate_as_interrupt():  # SIGTERM cleans up like Ctrl-C
        summary = generate_footage(out, spec, overwrite=overwrite, video=video, frames=frames)
    typer.echo(f"wrote synthetic footage to {out}: {summary}")


@app.command("check-data")
def check_data(
    root: Annotated[
        Path, typer.Argument(help="Table dataset folder (images.csv, attributes.csv).")
    ],
    schema: Annotated[
        str | None,
        typer.Option(help="Schema: a shipped name or a .yaml path (default: DIR/schema.yaml)."),
    ] = None,
) -> None:
    """Check a table dataset: print its summary, or the file and line of every problem."""
    from cerberus.data.table import check_table_dataset, table_summary

    found = check_table_dataset(root, schema)
    for warning in found.warnings:
        typer.echo(f"warning: {warning}")
    if found.problems:
        for problem in found.problems:
            typer.echo(str(problem))
        many = len(found.problems)
        raise CerberusError(f"{root}: {many} problem{'s' if many > 1 else ''} (listed above)")
    assert found.dataset is not None
    typer.echo(table_summary(found.dataset, found.camera_labels, found.extra_attribute_ids))
    typer.echo("ok")
