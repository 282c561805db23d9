"""adshift-bench: anomaly detection under distribution shift.

Importing the package first caps the CPU libraries' kernels at AVX2 (``bench.numerics``), before
numpy or torch load, so that a cell computes the same bits on every x86 host of that level.
"""
from .numerics import pin_cpu_kernels as _pin_cpu_kernels

_pin_cpu_kernels()
