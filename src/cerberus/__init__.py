"""Cerberus: attribute-based person re-identification with semantic IDs (SIDs).

One model serves three tasks: reID (image -> images), APS (attributes -> images) and
PAR (image -> attributes). The method, with its equations and the decisions this code takes
where the paper leaves them open, is written down in ``docs/method.md``; docstrings cite its
sections as "method §n" or "method §n.m" (``tests/test_docs.py`` checks every citation).

Python API (README: Python API)::

    import cerberus
    model = cerberus.load("last.pt")          # a checkpoint or a weights pair
    model.describe(["crop.jpg"])              # PAR
    model.open_gallery("gallery.npz").by_attributes("gender=female").rows  # APS

``Cerberus`` and ``load`` are imported on first use (``import cerberus`` stays light).
"""

from typing import Any

from cerberus.errors import CerberusError

__version__ = "0.1.0"
__all__ = ["Cerberus", "CerberusError", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in ("Cerberus", "load"):
        from cerberus.search import api

        return getattr(api, name)
    raise AttributeError(f"module 'cerberus' has no attribute {name!r}")
