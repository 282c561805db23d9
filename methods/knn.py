"""Exact nearest-neighbour search over a memory bank: FAISS ``IndexFlatL2`` (squared L2).

FAISS on the CPU; on a CUDA device FAISS on the GPU when a GPU wheel is installed
(``python -m bench.faiss_gpu --install``: the wheel for torch's CUDA major),
otherwise exact torch search on the GPU (matmul + top-k, the same squared distances). The TTA
losses use ``torch_knn`` directly because they need gradients through the queries.
"""
from __future__ import annotations

import os
import sys


def _openblas_core() -> str | None:
    """The OpenBLAS kernel family for this CPU, from /proc/cpuinfo flags (Linux x86 only)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return None
    if "avx512f" in flags and "avx512bw" in flags:
        return "SkylakeX"
    if "avx2" in flags:
        return "Haswell"
    return None


# faiss-cpu wheels bundle an old OpenBLAS that does not recognise recent Xeons and falls back
# to its "Prescott" (SSE3) kernels: 16 GFLOP/s instead of ~80 here. Naming the core family
# before faiss loads fixes that; a value the user set is left alone.
if "faiss" not in sys.modules and "OPENBLAS_CORETYPE" not in os.environ:
    _core = _openblas_core()
    if _core:
        os.environ["OPENBLAS_CORETYPE"] = _core

import numpy as np  # noqa: E402
import torch  # noqa: E402

from .errors import BenchError  # noqa: E402


def _faiss():
    """faiss, imported on first use (a CUDA run without faiss-gpu never needs it)."""
    import faiss

    return faiss


def _has_faiss_gpu() -> bool:
    try:
        faiss = _faiss()
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def backend_for(device: str) -> str:
    """``faiss`` (CPU), ``faiss-gpu`` (CUDA with a FAISS GPU wheel) or ``torch`` (CUDA without
    it: exact squared L2 by matmul + top-k on the GPU)."""
    if not device.startswith("cuda"):
        return "faiss"
    return "faiss-gpu" if _has_faiss_gpu() else "torch"


class NearestNeighbours:
    """``search(queries, k) -> (squared distances, indices)`` against a fixed bank."""

    def __init__(self, bank: np.ndarray, device: str = "cpu", backend: str | None = None) -> None:
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        bad = ~np.isfinite(self.bank).all(axis=1)
        if bad.any():  # FAISS skips such rows without a word: a smaller bank than the method built
            raise BenchError(f"{int(bad.sum())} of {len(self.bank)} memory-bank features are NaN/inf: the "
                             "backbone or the adaptation diverged; check the method's settings (--set)")
        self.backend = backend or backend_for(device)  # a named backend: bench doctor compares them
        self.on_gpu = self.backend != "faiss"
        if self.backend == "torch":
            self._bank_t = torch.from_numpy(self.bank).to(device)
            return
        faiss = _faiss()
        index = faiss.IndexFlatL2(self.bank.shape[1])
        if self.backend == "faiss-gpu":
            self._res = faiss.StandardGpuResources()  # must outlive the index
            gpu_id = int(device.split(":")[1]) if ":" in device else 0
            index = faiss.index_cpu_to_gpu(self._res, gpu_id, index)
        index.add(self.bank)
        self.index = index

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "torch":
            with torch.no_grad():
                q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32)).to(self._bank_t.device)
                dist, idx = torch_knn(q, self._bank_t, k)
            return dist.cpu().numpy(), idx.cpu().numpy()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        dist, idx = self.index.search(q, k)
        missing = (idx < 0).any(axis=1)
        if missing.any():  # FAISS answers a NaN/inf query with index -1 at float32's maximum distance
            raise BenchError(f"{int(missing.sum())} of {len(q)} query features found no neighbour (NaN/inf "
                             "features: the backbone or the adaptation diverged); check the method's settings (--set)")
        return np.maximum(dist, 0.0), idx


def torch_knn(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk: int = 4096):
    """Squared-L2 k-NN in torch, chunked over queries; differentiable w.r.t. ``queries``."""
    bank_sq = (bank * bank).sum(1)
    dists, idxs = [], []
    for lo in range(0, len(queries), chunk):
        q = queries[lo : lo + chunk]
        d = (q * q).sum(1, keepdim=True) - 2.0 * q @ bank.T + bank_sq[None, :]
        dd, ii = torch.topk(d, k, dim=1, largest=False)
        dists.append(dd.clamp_min(0.0))
        idxs.append(ii)
    return torch.cat(dists), torch.cat(idxs)
