"""Optional capabilities of a method: the harness checks them with ``isinstance``.

A method that has none of them is complete; one that implements a method below gains the
row columns it feeds. They are structural (``typing.Protocol``): implementing the method is
all it takes, no base class to inherit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np



@runtime_checkable
class Diagnostics(Protocol):
    def diagnostics(self) -> dict[str, Any]:
        """Extra numbers for the result row as ``diag_<name>`` columns (e.g. adaptation loss).

        Called after ``fit`` (recorded with the fitted state) and after ``score`` in every cell.
        """


@runtime_checkable
class PatchReports(Protocol):
    def patch_reports(self) -> dict[str, np.ndarray]:
        """Per-patch numbers from the last ``adapt``: name -> (N target images, patches) array.

        The patches form a square grid over the method's evaluation crop (row-major); a row of
        NaN marks an image the method did not report on. The runner, which alone sees the
        masks, turns each array into ``diag_<name>_*`` counts inside and outside the anomaly
        masks (e.g. how many OT assignments went to anomalous patches).
        """


def diagnostics_of(method: object) -> dict[str, Any]:
    return method.diagnostics() if isinstance(method, Diagnostics) else {}


def patch_reports_of(method: object) -> dict[str, np.ndarray]:
    return method.patch_reports() if isinstance(method, PatchReports) else {}


@runtime_checkable
class SharedScores(Protocol):
    def score_identity(self) -> dict[str, Any] | None:
        """Everything ``score`` reads besides the images, as JSON-able values (hash large arrays),
        or None when this instance's scores are its own (e.g. ``adapt`` moved its weights).

        Cells of one grid whose identities and test images are equal get one scoring: the
        runner reuses the first one's scores (bit for bit what ``score`` would return) and
        names its cell in the row (``scores_shared_from``). E.g. TTAD Table 4's ``none`` row
        scores as ``patchcore`` on the same bank.
        """


def score_identity_of(method: object) -> dict[str, Any] | None:
    return method.score_identity() if isinstance(method, SharedScores) else None
