"""The project's own error type: a one-line message that names the file, field or value at fault."""

from __future__ import annotations


class CerberusError(Exception):
    """Bad input (files, configs, queries). The CLI prints it as one line with exit code 2."""


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters with an ellipsis: how an error message echoes
    input it was given (a request can send megabytes; the answer quotes a bounded part)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
