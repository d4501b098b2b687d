"""The project's own error type: a one-line message that names the file, field or value at fault."""

from __future__ import annotations


class CerberusError(Exception):
    """Bad input (files, configs, queries). The CLI prints it as one line with exit code 2."""
