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


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    data_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="market: Market-1501 folders + market_attribute.mat; table: the same crops "
            "with images.csv, attributes.csv and schema.yaml (README: Your own data).",
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
    """Generate the built-in synthetic benchmark (Market-1501 layout, or a table dataset)."""
    from cerberus.data.synthetic import generate_synthetic, make_contact_sheet, make_value_sheet

    at_least("--workers", workers, 1)
    if data_format not in ("market", "table"):
        raise CerberusError(f"--format {data_format!r}: must be market or table")
    if not camera_column and data_format != "table":
        raise CerberusError("--no-camera-column needs --format table (Market names hold cameras)")
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
