"""Gaussian smoothing of a batch of anomaly maps (PatchCore's and RD4AD's sigma-4 filter)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter


@lru_cache(maxsize=1)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="smooth")


def smooth_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Each (H, W) map of the float32 stack (N, H, W) filtered with a Gaussian of ``sigma``
    (scipy's defaults: reflect borders, truncated at 4 sigma), as float32.

    The same bits as ``gaussian_filter(map, sigma)`` map by map: the stack is filtered along its
    two image axes only, in chunks on torch's thread count (scipy releases the GIL; a map's
    values do not depend on its chunk)."""
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if sigma <= 0 or len(maps) == 0:
        return maps
    def one(chunk: np.ndarray) -> np.ndarray:
        return gaussian_filter(chunk, sigma=(0.0, sigma, sigma))

    workers = min(torch.get_num_threads(), len(maps))
    if workers <= 1:
        return one(maps)
    return np.concatenate(list(_pool(workers).map(one, np.array_split(maps, workers))))
