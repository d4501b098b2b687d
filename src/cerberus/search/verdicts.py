"""Same person or not: the calibrated operating point of a model (``cerberus calibrate``) and the
verdicts of reID scores against it, each saying which data the threshold was calibrated on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cerberus.errors import CerberusError

if TYPE_CHECKING:
    from cerberus.inference.embed import InferenceModel


DEFAULT_THRESHOLD = 0.9
"""The reID similarity above which "where else was this person?" counts a crop as a sighting
when the model has no calibration (docs/calibration.md): strict on purpose, a little above the
demo model's calibrated threshold at FPR 1e-4 on its synthetic test split (0.890); crops below
it are only candidates. A calibrated threshold, measured on the model's own data, replaces it."""


def calibration_source(calibration: dict[str, Any], *, full: bool = True) -> str:
    """Which data a threshold was measured on: ``"the test split of /data/market"``.

    ``full=False`` gives the data folder's name only (what the page shows). Calibrations
    stored before the data was recorded say ``"unrecorded data"``.
    """
    data = str(calibration.get("data") or "")
    where = (data if full else Path(data).name) if data else "unrecorded data"
    split = calibration.get("split")
    return f"the {split} split of {where}" if split else where


@dataclass(frozen=True)
class Verdicts:
    """A model's operating point (its chosen FPR, or another calibrated one) and what it says.

    ``point`` and ``calibration`` are ``None`` for an uncalibrated model: verdicts are then
    ``None`` and :attr:`text` says how to calibrate.
    """

    point: dict[str, Any] | None
    calibration: dict[str, Any] | None
    checkpoint: str

    @classmethod
    def of(cls, net: InferenceModel, fpr: float | None = None) -> Verdicts:
        """The operating point of ``net`` at ``fpr`` (default: the one calibrate chose)."""
        from cerberus.evaluation.calibration import operating_point

        if net.calibration is None:
            if fpr is not None:
                raise CerberusError(f"--fpr {fpr:g}: {net.checkpoint} has no calibration")
            return cls(None, None, str(net.checkpoint))
        return cls(operating_point(net.calibration, fpr), net.calibration, str(net.checkpoint))

    @property
    def calibrated_on(self) -> str | None:
        """:func:`calibration_source` of the calibration, or ``None``."""
        return None if self.calibration is None else calibration_source(self.calibration)

    @property
    def text(self) -> str:
        """``"threshold 0.61 at FPR 1e-03 (...); calibrated on the test split of DATA"``, or
        the command that calibrates an uncalibrated model."""
        if self.point is None or self.calibration is None:
            return (
                f"no calibrated threshold for {self.checkpoint}: run `cerberus calibrate "
                f"--checkpoint {self.checkpoint}` to say same person / different"
            )
        return self._sentence(full=True)

    def _sentence(self, *, full: bool) -> str:
        from cerberus.evaluation.calibration import describe_point

        source = calibration_source(self.calibration, full=full)
        return f"{describe_point(self.point, self.calibration)}; calibrated on {source}"

    def page_json(self) -> dict[str, Any] | None:
        """The point for the page: its fields, a ``text`` and ``calibrated_on`` (folder name
        only: the page never shows server paths)."""
        if self.point is None or self.calibration is None:
            return None
        source = calibration_source(self.calibration, full=False)
        return {**self.point, "text": self._sentence(full=False), "calibrated_on": source}

    def same(self, score: float) -> bool | None:
        """Same person: ``score > threshold``; ``None`` without a calibration."""
        from cerberus.evaluation.calibration import verdict

        return None if self.point is None else verdict(score, self.point)

    def mark(self, rows: list[dict[str, Any]], *, full: bool = True) -> list[dict[str, Any]]:
        """Add ``same_person`` and ``calibrated_on`` to reID result rows (in place)."""
        source = None
        if self.calibration is not None:
            source = calibration_source(self.calibration, full=full)
        for row in rows:
            row["same_person"] = self.same(row["score"])
            row["calibrated_on"] = source
        return rows
