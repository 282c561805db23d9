"""Anomaly detection methods behind one fit/adapt/score contract (see ``base.py``)."""
from .base import ADAPT, FIT, Method, MethodConfig, Scores, bounded
from .capabilities import Diagnostics, PatchReports
from .contract import check_method
from .geometry import Geometry
from .registry import Registered, get, register, register_variant, registered, registered_temporarily

__all__ = ["ADAPT", "FIT", "Diagnostics", "Geometry", "Method", "MethodConfig", "PatchReports", "Registered",
           "Scores", "bounded", "check_method", "get", "register", "register_variant", "registered",
           "registered_temporarily"]
