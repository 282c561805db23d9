"""Anomaly detection methods behind one fit/adapt/score contract (see ``base.py``)."""
from .base import ADAPT, FIT, Method, MethodConfig, Scores, bounded
from .capabilities import Diagnostics, PatchReports, SharedScores
from .geometry import Geometry
from .registry import Registered, get, register, register_variant, registered, registered_temporarily

__all__ = ["ADAPT", "FIT", "Diagnostics", "Geometry", "Method", "MethodConfig", "PatchReports", "Registered",
           "Scores", "SharedScores", "bounded", "check_method", "get", "register", "register_variant", "registered",
           "registered_temporarily"]


def __getattr__(name: str):
    if name == "check_method":  # imported on use: it needs numpy and torch, listing methods does not
        from .contract import check_method

        return check_method
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
