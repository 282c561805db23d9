"""Images on a method's grid as normalised tensor batches (the grid itself: ``geometry.py``)."""
from __future__ import annotations

from typing import Iterator, Sequence

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


def batches(
    images: Sequence[np.ndarray], geometry: Geometry, batch_size: int, norm: Normalization | None
) -> Iterator[torch.Tensor]:
    """Yield normalised (B, 3, S, S) batches of ``images`` on ``geometry``'s grid."""
    buf: list[np.ndarray] = []
    for img in images:
        buf.append(geometry.image(img))
        if len(buf) == batch_size:
            yield to_tensor(buf, norm)
            buf = []
    if buf:
        yield to_tensor(buf, norm)
