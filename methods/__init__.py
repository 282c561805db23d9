"""Anomaly detection methods behind one fit/adapt/score contract (see ``base.py``)."""
from .base import ADAPT, FIT, Method, MethodConfig, Scores, bounded
from .capabilities import Diagnostics, PatchReports, SharedScores
from .geometry import Geometry
from .registry import Registered, get, register, register_variant, registered, registered_temporarily

__all__ = ["ADAPT", "FIT", "Diagnostics", "Geometry", "Method", "MethodConfig", "PatchReports", "Registered",
           "Scores", "SharedScores", "bounded", "check_method", "ContractError", "get", "register",
           "register_variant", "registered", "registered_temporarily"]


def __getattr__(name: str):
    if name in ("check_method", "ContractError"):  # imported on use: they need numpy and torch, listing does not
        from . import contract

        return getattr(contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
