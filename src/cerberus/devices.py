"""The torch device a ``device`` setting names, checked before any work starts."""

from __future__ import annotations

import torch

from cerberus.config import check_device
from cerberus.errors import CerberusError


def resolve_device(
    name: str | torch.device, where: str, *, local_rank: int | None = None
) -> torch.device:
    """``auto`` -> CUDA if present, else CPU; a device that is not there is a one-line error.

    ``where`` names the setting in the message (``"--device"``, ``"train.device"``);
    ``local_rank`` picks the GPU of a distributed process when ``name`` is ``cuda``.
    """
    name = check_device(str(name), where)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CerberusError(f"{where} {name}: no CUDA device is available (use cpu)")
        index = int(name.partition(":")[2] or (local_rank or 0))
        if index >= torch.cuda.device_count():
            raise CerberusError(
                f"{where} {name}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return torch.device("cuda", index)
    if name == "mps" and not torch.backends.mps.is_available():
        raise CerberusError(f"{where} mps: no MPS device is available (use cpu)")
    return torch.device(name)
