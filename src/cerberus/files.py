"""Atomic file writes: checkpoints, feature and index files, figures.

A file is written to a temporary name in its own folder, flushed to disk, then renamed over the
target, so a crash or a full disk leaves the previous file intact and no half-written one.
:func:`same_file_key` compares paths as files (``..`` and links resolved).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cerberus.errors import CerberusError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], what: str) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    Raises :class:`CerberusError` ``"<path>: could not write <what> (<reason>)"`` when the
    folder cannot be made or written, or the disk is full; the temporary file is removed.
    Libraries that wrap a failed write in their own error (torch's zip writer raises
    ``RuntimeError`` from the ``OSError``) are reported the same way.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        cause = exc if isinstance(exc, OSError) else exc.__context__
        if not isinstance(cause, OSError):
            raise
        reason = cause.strerror or str(cause)
        raise CerberusError(f"{path}: could not write {what} ({reason})") from None
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def atomic_write_text(path: str | Path, text: str, what: str) -> Path:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write(path, lambda fh: fh.write(text.encode()), what)


def atomic_write_json(path: str | Path, data: object, what: str) -> Path:
    """:func:`atomic_write` of ``data`` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2), what)


def same_file_key(path: str | os.PathLike) -> str:
    """A key equal for two paths of the same file: absolute, ``..`` and links resolved
    (``crops/../crops/x.png`` and ``crops/x.png`` have one key)."""
    return os.path.normcase(os.path.realpath(path))
