"""Times of gallery items and footage (method §9.2): ISO-8601 with a zone <-> seconds since the
epoch, UTC. The one parser: the store's filters and items (:mod:`cerberus.store.base`
re-exports it) and the synthetic footage's ``--start`` use it."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from cerberus.errors import CerberusError, shown


def to_utc_seconds(
    moment: datetime | str | float | None,
    what: str = "time",
    error: type[CerberusError] = CerberusError,
) -> float:
    """Seconds since the epoch (UTC) of a timezone-aware time, an ISO-8601 string with an offset
    or ``Z``, or a number of seconds; ``nan`` for ``None``. A naive time is refused (``error``,
    one line naming ``what``): a camera's clock without a zone is ambiguous by hours."""
    if moment is None:
        return math.nan
    if isinstance(moment, int | float | np.integer | np.floating):
        return float(moment)
    if isinstance(moment, str):
        text = moment.strip()
        try:
            zulu = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
            moment = datetime.fromisoformat(zulu)
        except ValueError:
            raise error(
                f"{what} {shown(text)}: not an ISO-8601 time (e.g. 2026-11-30T14:00:00+01:00)"
            ) from None
    if not isinstance(moment, datetime):
        raise error(f"{what} {shown(moment)}: not a time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise error(
            f"{what} {moment.isoformat()}: no time zone; give one (e.g. +01:00 or Z for UTC)"
        )
    return moment.timestamp()


def from_utc_seconds(seconds: float) -> datetime | None:
    """The aware UTC time of ``seconds`` since the epoch; ``None`` for ``nan``."""
    if seconds is None or math.isnan(seconds):
        return None
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc)
