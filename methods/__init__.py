"""Anomaly detection methods behind one fit/adapt/score contract (see ``base.py``)."""
from .base import (Method, MethodConfig, Registered, Scores, get, register, register_variant, registered,
                   registered_temporarily)

__all__ = ["Method", "MethodConfig", "Registered", "Scores", "get", "register", "register_variant", "registered",
           "registered_temporarily"]
