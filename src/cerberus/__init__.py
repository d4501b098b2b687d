"""Cerberus: attribute-based person re-identification with semantic IDs (SIDs).

One model serves three tasks: reID (image -> images), APS (attributes -> images) and
PAR (image -> attributes). See SPEC.md for the method.
"""

from cerberus.errors import CerberusError

__version__ = "0.1.0"
__all__ = ["CerberusError", "__version__"]
