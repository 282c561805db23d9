"""Images on a method's grid as normalised tensor batches (the grid itself: ``geometry.py``)."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from .backbones import Normalization
from .geometry import Geometry


def to_tensor(images: Sequence[np.ndarray], norm: Normalization | None) -> torch.Tensor:
    """Stack uint8 (S, S, 3) images into a float (B, 3, S, S) batch, normalised with ``norm``
    (the backbone's own, ``backbones.normalization``); None: plain [0, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if norm is not None:
        mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
        std = torch.tensor(norm.std).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


T = TypeVar("T")


def batched(items: Iterable[np.ndarray], prepare: Callable[[np.ndarray], T], batch_size: int,
            stack: Callable[[list[T]], torch.Tensor]) -> Iterator[torch.Tensor]:
    """``stack`` of ``batch_size`` prepared items at a time (the last batch may be smaller)."""
    buf: list[T] = []
    for item in items:
        buf.append(prepare(item))
        if len(buf) == batch_size:
            yield stack(buf)
            buf = []
    if buf:
        yield stack(buf)


def batches(
    images: Sequence[np.ndarray], geometry: Geometry, batch_size: int, norm: Normalization | None
) -> Iterator[torch.Tensor]:
    """Yield normalised (B, 3, S, S) batches of ``images`` on ``geometry``'s grid."""
    return batched(images, geometry.image, batch_size, lambda buf: to_tensor(buf, norm))
