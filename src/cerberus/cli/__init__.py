"""The ``cerberus`` command line: parse, call the library, print. Errors become one red line
and exit code 2.

One module per family of commands (:mod:`~cerberus.cli.data`, :mod:`~cerberus.cli.training`,
:mod:`~cerberus.cli.search`, :mod:`~cerberus.cli.footage`, :mod:`~cerberus.cli.model`,
:mod:`~cerberus.cli.figures`); they reach the model and the gallery index only through the
search layer (:mod:`cerberus.search`); ``ingest`` goes through :mod:`cerberus.footage.ingest`.
"""

from __future__ import annotations

import logging
import sys

import typer

# importing a module registers its commands; --help lists them in this order
# isort: off
from cerberus.cli import data, training, search, gallery, footage, model, figures  # noqa: F401
from cerberus.cli._app import app, debugging, one_line
from cerberus.errors import CerberusError

# isort: on

__all__ = ["app", "main"]


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever ``sys.stderr`` is now (tests and progress bars replace it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging() -> None:
    """INFO lines of the ``cerberus`` loggers; other libraries keep their own (quiet) levels."""
    log = logging.getLogger("cerberus")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app; errors print as one red line.

    Exit code 2: bad input or an environment problem (our own :class:`CerberusError`, an
    ``OSError`` such as a read-only folder); 1: an unexpected error, whose traceback is shown
    with ``--debug`` or ``CERBERUS_DEBUG=1``.
    """
    _configure_logging()
    try:
        app()
    except CerberusError as exc:
        _fail(one_line(str(exc)))
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        sys.exit(130)
    except OSError as exc:
        if debugging():
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(where + one_line(exc.strerror or str(exc)))
    except Exception as exc:
        if debugging():
            raise
        text = one_line(str(exc)) if str(exc).strip() else ""
        _fail(
            f"unexpected {type(exc).__name__}{': ' if text else ''}{text[:300]} "
            "(a bug: rerun with --debug or CERBERUS_DEBUG=1 for the traceback)",
            code=1,
        )
