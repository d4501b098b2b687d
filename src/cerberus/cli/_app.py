"""The ``cerberus`` Typer app, its global options and what the command modules share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cerberus.errors import CerberusError

app = typer.Typer(
    name="cerberus",
    help="Attribute-based person re-identification with semantic IDs: reID, APS and PAR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DEBUG = {"on": False}


def debugging() -> bool:
    return _DEBUG["on"] or os.environ.get("CERBERUS_DEBUG", "") not in ("", "0")


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")
    ] = False,
) -> None:
    """Attribute-based person re-identification with semantic IDs: reID, APS and PAR."""
    _DEBUG["on"] = debug


def at_least(option: str, value: int | None, least: int) -> None:
    """Refuse a numeric option below ``least`` (``None``: the option was not given)."""
    if value is not None and value < least:
        raise CerberusError(f"{option} {value}: must be at least {least}")


Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Config overrides as section.key=value, e.g. optim.iterations=100."),
]


def int_list(text: str, option: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise CerberusError(f"{option} {text!r}: expected comma-separated integers") from None


def float_list(text: str, option: str) -> list[float]:
    try:
        return [float(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise CerberusError(f"{option} {text!r}: expected comma-separated numbers") from None


Checkpoint = Annotated[
    Path,
    typer.Option(
        "--checkpoint",
        help="Trained checkpoint (last.pt) or weights pair (X.safetensors / X.json).",
    ),
]
Device = Annotated[str, typer.Option(help="cpu, cuda or auto.")]
Exact = Annotated[
    bool,
    typer.Option("--exact", help="Search exactly (never the approximate index): slower, recall 1."),
]
Nprobe = Annotated[
    str | None,
    typer.Option(
        "--nprobe",
        help="Cells the approximate index probes (default: the setting measured on the gallery "
        "to reach recall@10 0.95; see `gallery info`).",
    ),
]


def nprobe_of(text: str | None) -> int | None:
    """``--nprobe``'s value as a whole number of at least 1 (read here, not by Typer, so that a
    bad value is one line)."""
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise CerberusError(
            f"--nprobe {text!r}: must be a whole number of cells, at least 1"
        ) from None
    at_least("--nprobe", value, 1)
    return value


def one_line(text: str) -> str:
    """The message itself: a DataLoader worker's error arrives wrapped in its traceback."""
    text = text.strip()
    if "Original Traceback" in text:
        last = [x for x in text.splitlines() if x.strip()][-1]
        name, sep, message = last.partition(": ")
        text = message if sep and " " not in name else last
    return " ".join(text.split()) or "(no message)"
