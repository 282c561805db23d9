"""Re-export of the user-facing errors (defined in the lowest layer, ``bench.methods.errors``)."""
from .methods.errors import BenchError, UnknownName

__all__ = ["BenchError", "UnknownName"]
