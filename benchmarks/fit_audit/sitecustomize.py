"""Fit audit for the fault trials (benchmarks/fault_trials.py), not part of the harness.

Imported at start-up by every Python process that has this folder on its PYTHONPATH. When
``ADSHIFT_FIT_AUDIT`` names a file, each fitted state this process stores in a fit cache (the
atomic rename onto ``fits/<key>.pt``) appends one JSON line ``{"key", "pid"}`` to it, so the
trials can count fits that were computed twice.
"""
import json
import os
import re
import sys

_FIT_FILE = re.compile(r"[/\\]fits[/\\]([0-9a-f]{20})\.pt$")


def _audit(event, args):
    if event != "os.rename":
        return
    path = os.environ.get("ADSHIFT_FIT_AUDIT")
    dst = args[1]
    if not path or not isinstance(dst, (str, bytes, os.PathLike)):
        return
    m = _FIT_FILE.search(os.fsdecode(dst))
    if m:
        with open(path, "a") as f:
            f.write(json.dumps({"key": m.group(1), "pid": os.getpid()}) + "\n")


sys.addaudithook(_audit)
