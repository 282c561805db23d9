"""Point-MAE features of organised point clouds, extracted as M3DM does (the "backbone" of M3DM's
point branch and of TTAD's Table 2 on MVTec 3D-AD).

Point-MAE (Pang et al., ECCV 2022; github.com/Pang-Yatian/Point-MAE, ``models/Point_MAE.py``),
encoder only, as M3DM's ``PointTransformer`` (github.com/nomewang/M3DM, ``models/models.py``):

- grouping: ``num_group`` centres by furthest point sampling over the cloud's valid points, each
  with its ``group_size`` nearest points, expressed relative to the centre;
- tokeniser: a mini-PointNet per group (Conv1d 3->128, BN, ReLU, Conv1d 128->256; max over the
  group's points, concatenated back to every point; Conv1d 512->512, BN, ReLU, Conv1d 512->384;
  max), plus a position embedding of the centre (Linear 3->128, GELU, Linear 128->384) added
  before every block;
- 12 pre-norm transformer blocks (dim 384, 6 heads, MLP ratio 4, no qkv bias); M3DM takes the
  outputs of blocks 3, 7 and 11 (0-based), each through the encoder's final LayerNorm, and
  concatenates them: 1152 features per group.

M3DM's extraction (``feature_extractors/features.py``, ``multiple_features.py::PointFeatures``):
the cloud's valid points in row-major order (a point is missing when a coordinate is 0), raw
coordinates in metres (no centring or scaling, though Point-MAE was pretrained on unit-sphere
ShapeNet shapes); group features interpolated back to every valid point from its 3 nearest
centres with weights 1 / (squared distance + 1e-8), normalised (``interpolating_points``); the
per-point features scattered onto the organised 224 x 224 grid (zeros at missing points),
``AvgPool2d(3, stride=1)`` and ``AdaptiveAvgPool2d((56, 56))``: a 56 x 56 patch grid for the
point features (BTF pools FPFH to 28 x 28; M3DM's 56 is what its code does). Interpolation and
pooling are linear in the group features, so they are applied here as one sparse (grid^2, G)
matrix per cloud: the same numbers as pooling the per-point grid
(``point_features.pool_patches(..., missing="zero")``, checked in tests), without a
(1152, 224, 224) map per cloud, and differentiable for test-time adaptation.

Furthest point sampling as pointnet2_ops' CUDA kernel (``furthest_point_sampling_kernel``): the
first centre is always the first valid point (index 0 in row-major order), points with
|p|^2 <= 1e-3 are never picked after it, distances in float32; ties go to the lowest index
(torch.argmax; the kernel's cross-thread reduction may break exact ties differently). Neighbours
by ``torch.cdist`` + ``topk`` (KNN_CUDA in the original). Deterministic: no random draws.

Weights (``weights=``): ``"shapenet"``, Point-MAE's published ShapeNet pretraining
(``pretrain.pth`` of its release, which M3DM loads as ``checkpoints/pointmae_pretrain.pth``),
looked up as ``pointmae_pretrain.pth`` in torch.hub's checkpoint folder (where the harness caches
torchvision's WRN-50 file) and downloaded there when missing; a path to that file (the state
dict under ``base_model``, keys ``MAE_encoder.*``; the decoder's keys are ignored); or
``"random"``, only when asked for: Point-MAE's own init (truncated normal std 0.02), seeded.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Mapping

import numba
import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .backbones import file_sha256
from .errors import BenchError

POINT_MAE = "point_mae"  # the backbone name rows record
SHAPENET = "shapenet"  # weights=: Point-MAE's ShapeNet pretraining
CHECKPOINT_FILE = "pointmae_pretrain.pth"  # M3DM's name for Point-MAE's pretrain.pth
CHECKPOINT_URL = "https://github.com/Pang-Yatian/Point-MAE/releases/download/main/pretrain.pth"
NUM_GROUP, GROUP_SIZE = 1024, 128  # M3DM main.py --num_group / --group_size
TRANS_DIM, DEPTH, HEADS, MLP_RATIO = 384, 12, 6, 4  # Point-MAE cfgs/pretrain.yaml
FETCH_BLOCKS = (3, 7, 11)  # M3DM TransformerEncoder fetch_idx
FEATURE_DIM = TRANS_DIM * len(FETCH_BLOCKS)  # 1152
M3DM_GRID, SMOOTH = 56, 3  # AdaptiveAvgPool2d((56, 56)) after AvgPool2d(3, stride=1)
INTERP_NEIGHBOURS = 3  # interpolating_points: 3 nearest centres
FPS_SKIP_MAG = 1e-3  # pointnet2's kernel never picks points with |p|^2 <= 1e-3


# ---------------------------------------------------------------------------------------------
# the network (module names follow Point-MAE's MAE_encoder, so its state dict loads as is)


class MiniPointNet(nn.Module):
    def __init__(self, dim: int = TRANS_DIM) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                        nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                         nn.Conv1d(512, dim, 1))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        """(n, M, 3) centred groups -> (n, dim) tokens.

        The original's Conv1d(k=1) stack, computed channels-last as matrix products (1x1 convs
        are), and the second block's input [group max, point feature] split: its first half is the
        same for all M points of a group, so that product is taken once per group (half the
        FLOPs of the largest layer; the same function, tested against the plain form)."""
        n, m, _ = groups.shape
        conv0, bn0, _, conv1 = self.first_conv
        conv2, bn1, _, conv3 = self.second_conv
        f = F.linear(groups.reshape(n * m, 3), conv0.weight[:, :, 0], conv0.bias)
        f = F.linear(F.relu(bn0(f)), conv1.weight[:, :, 0], conv1.bias).reshape(n, m, -1)  # (n, M, 256)
        k = f.shape[-1]
        w_max, w_point = conv2.weight[:, :k, 0].contiguous(), conv2.weight[:, k:, 0].contiguous()  # group max first
        f = F.linear(f, w_point) + F.linear(f.amax(1), w_max, conv2.bias)[:, None]
        f = F.linear(F.relu(bn1(f.reshape(n * m, -1))), conv3.weight[:, :, 0], conv3.bias)
        return f.reshape(n, m, -1).amax(1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim ** -0.5, as the original
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block; Point-MAE's drop path (0.1 in pretraining) is the identity at inference."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.mlp = Attention(dim, heads), Mlp(dim, dim * MLP_RATIO)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Blocks(nn.Module):  # Point-MAE's TransformerEncoder: keys blocks.blocks.<i>.*
    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))


class PointMAE(nn.Module):
    """Point-MAE's encoder (no masking) returning M3DM's 1152-d group features."""

    def __init__(self, dim: int = TRANS_DIM, depth: int = DEPTH, heads: int = HEADS,
                 fetch: tuple[int, ...] = FETCH_BLOCKS) -> None:
        super().__init__()
        self.fetch = fetch
        self.encoder = MiniPointNet(dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = Blocks(dim, depth, heads)
        self.norm = nn.LayerNorm(dim)
        self.apply(_init_weights)

    def tokens(self, groups: torch.Tensor) -> torch.Tensor:
        """(B, G, M, 3) -> (B, G, dim), one cloud's groups at a time.

        Memory: the mini-PointNet holds ~3,000 floats per point (1.5 GB for 1024 x 128 points);
        with eval-mode BN the clouds are independent, so they go through one at a time, and under
        autograd each cloud's pass is recomputed in backward instead of stored (same gradients).
        Train-mode BN (bn_mode=batch) needs the whole batch in one pass for its statistics."""
        b, g, m, _ = groups.shape
        if any(mod.training for mod in self.encoder.modules() if isinstance(mod, nn.BatchNorm1d)):
            return self.encoder(groups.reshape(b * g, m, 3)).reshape(b, g, -1)
        out = []
        for one in groups:
            if torch.is_grad_enabled():
                out.append(torch.utils.checkpoint.checkpoint(self.encoder, one, use_reentrant=False))
            else:
                out.append(self.encoder(one))
        return torch.stack(out)

    def forward(self, groups: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """(B, G, M, 3) centred groups, (B, G, 3) centres -> (B, G, 1152)."""
        x, pos = self.tokens(groups), self.pos_embed(centres)
        feats = []
        for i, block in enumerate(self.blocks.blocks):
            x = block(x + pos)
            if i in self.fetch:
                feats.append(self.norm(x))
            if i >= max(self.fetch):
                break  # later blocks feed nothing M3DM uses
        return torch.cat(feats, dim=-1)


def _init_weights(m: nn.Module) -> None:
    """Point-MAE's MaskTransformer._init_weights (the architecture's own init, for weights=random)."""
    if isinstance(m, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# grouping, interpolation and pooling (no parameters: computed without gradient)


def valid_mask(clouds: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) organised clouds -> (B, H, W) bool, like ``point_features.valid_points``."""
    return (clouds != 0).all(dim=1)


def furthest_point_sampling(points: torch.Tensor, n: int) -> torch.Tensor:
    """(N, 3) -> (n,) indices; pointnet2_ops' rules (see the module doc): start at index 0.

    On the CPU one numba pass per centre (``_fps_kernel``: the same float32 sums, minima and
    first-maximum ties as ``_fps_torch``, which a GPU runs); the torch loop's small tensor ops
    cost ~1.5-3 s per 50k-point cloud on two cores, paid for every view of every adaptation step."""
    if points.device.type == "cpu" and points.dtype == torch.float32:
        return torch.from_numpy(_fps_kernel(points.detach().contiguous().numpy(), n, np.float32(FPS_SKIP_MAG)))
    return _fps_torch(points, n)


def _fps_torch(points: torch.Tensor, n: int) -> torch.Tensor:
    dist = torch.full((len(points),), 1e10, dtype=points.dtype, device=points.device)
    dist[(points * points).sum(1) <= FPS_SKIP_MAG] = -1.0  # never selected (min keeps -1)
    idx = torch.zeros(n, dtype=torch.long, device=points.device)
    cur = 0
    for i in range(n):
        idx[i] = cur
        if i + 1 < n:
            d = ((points - points[cur]) ** 2).sum(1)
            torch.minimum(dist, d, out=dist)
            cur = int(torch.argmax(dist))
    return idx


@numba.njit(cache=True)
def _fps_kernel(points, n, skip):  # pragma: no cover - numba
    """The torch loop's arithmetic in float32: d = (dx*dx + dy*dy) + dz*dz, dist = min(dist, d),
    next centre = the first index of dist's maximum (torch.argmax's tie rule)."""
    npts = points.shape[0]
    dist = np.empty(npts, dtype=np.float32)
    for j in range(npts):
        x, y, z = points[j, 0], points[j, 1], points[j, 2]
        dist[j] = np.float32(-1.0) if (x * x + y * y) + z * z <= skip else np.float32(1e10)
    idx = np.zeros(n, dtype=np.int64)
    cur = 0
    for i in range(n):
        idx[i] = cur
        if i + 1 == n:
            break
        cx, cy, cz = points[cur, 0], points[cur, 1], points[cur, 2]
        best, nxt = np.float32(-np.inf), 0
        for j in range(npts):
            dx, dy, dz = points[j, 0] - cx, points[j, 1] - cy, points[j, 2] - cz
            d = (dx * dx + dy * dy) + dz * dz
            if d < dist[j]:
                dist[j] = d
            if dist[j] > best:
                best, nxt = dist[j], j
        cur = nxt
    return idx


def _nearest(queries: torch.Tensor, points: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices (len(queries), k) of the k nearest ``points``, nearest first."""
    k = min(k, len(points))
    ds, ix = [], []
    for lo in range(0, len(queries), chunk):
        d = torch.cdist(queries[lo:lo + chunk], points).square_()
        v, i = torch.topk(d, k, dim=1, largest=False, sorted=True)
        ds.append(v)
        ix.append(i)
    return torch.cat(ds), torch.cat(ix)


def group(points: torch.Tensor, num_group: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3) -> (num_group, group_size, 3) neighbourhoods relative to their centres, (num_group, 3)
    centres. Fewer than group_size points: the neighbours repeat (max pooling is unchanged)."""
    centres = points[furthest_point_sampling(points, num_group)]
    _, idx = _nearest(centres, points, group_size)
    if idx.shape[1] < group_size:
        idx = idx[:, torch.arange(group_size, device=idx.device) % idx.shape[1]]
    return points[idx] - centres[:, None], centres


@functools.lru_cache(maxsize=8)
def _pool_1d(side: int, grid: int, smooth: int) -> torch.Tensor:
    """(grid, side): AvgPool(smooth, stride 1) then adaptive average to ``grid`` along one axis
    (separable, so the 2-D pooling is the outer product of two of these)."""
    if side - smooth + 1 < grid:
        raise BenchError(f"a {side}-point side is too small for a {grid}x{grid} patch grid after the "
                         f"{smooth}x{smooth} average; use a smaller grid or a larger cloud")
    eye = torch.eye(side)[:, None, :]  # impulses: column j of the operator is the pooled impulse at j
    return F.adaptive_avg_pool1d(F.avg_pool1d(eye, smooth, stride=1), grid)[:, 0, :].T.contiguous()


def pooling_operator(valid: torch.Tensor, centres: torch.Tensor, points: torch.Tensor, grid: int,
                     smooth: int = SMOOTH) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear map from G group features to grid^2 patch features of one cloud, sparse (grid^2, G),
    and the (grid^2,) bool of patches that hold a valid point.

    Row p of the map: sum over the valid points q of pool[p, q] * w[q, c] (3-NN inverse squared
    distance weights of M3DM's interpolation; pool = the smooth x smooth average then the adaptive
    average to grid x grid, missing points contributing zeros)."""
    h, w = valid.shape
    py, px = _pool_1d(h, grid, smooth).to(points.device), _pool_1d(w, grid, smooth).to(points.device)
    rows, cols = valid.nonzero(as_tuple=True)  # row-major: the order of ``points``
    d2, nn_idx = _nearest(points, centres, INTERP_NEIGHBOURS)
    wgt = 1.0 / (d2 + 1e-8)
    wgt = wgt / wgt.sum(1, keepdim=True)  # (N, 3)
    # each point reaches only the few patch rows / columns whose pooling windows cover it
    ky, kx = int((py > 0).sum(0).max()), int((px > 0).sum(0).max())
    wy, gy = torch.topk(py[:, rows].T, ky, dim=1)  # (N, ky) weights and patch rows
    wx, gx = torch.topk(px[:, cols].T, kx, dim=1)
    n = len(points)
    patch = (gy[:, :, None] * grid + gx[:, None, :]).reshape(n, -1)  # (N, ky*kx)
    pw = (wy[:, :, None] * wx[:, None, :]).reshape(n, -1)
    r = patch[:, :, None].expand(-1, -1, nn_idx.shape[1])
    c = nn_idx[:, None, :].expand_as(r)
    v = pw[:, :, None] * wgt[:, None, :]
    op = torch.sparse_coo_tensor(torch.stack([r.reshape(-1), c.reshape(-1)]), v.reshape(-1),
                                 (grid * grid, len(centres)), check_invariants=False).coalesce()
    share = (py @ valid.float() @ px.T).reshape(-1)
    return op, share > 0


class PointMAEEmbedder(nn.Module):
    """Organised clouds (B, 3, H, W), zeros = missing -> (B, grid^2, 1152) patch features.

    What PatchCore's ``embedder`` is for images: ``backbone`` holds the network (its BatchNorm
    layers are what test-time adaptation trains), ``grid()`` the patch grid's side."""

    def __init__(self, num_group: int = NUM_GROUP, group_size: int = GROUP_SIZE, grid: int = M3DM_GRID,
                 weights: str = SHAPENET, seed: int = 0) -> None:
        super().__init__()
        self.num_group, self.group_size, self._grid = num_group, group_size, grid
        with torch.random.fork_rng(devices=[]):  # a random init never depends on the global RNG
            torch.manual_seed(seed)
            self.backbone = PointMAE()
        if weights != "random":
            load_weights(self.backbone, weights)
        self.backbone.eval()

    def grid(self) -> int:
        return self._grid

    @torch.no_grad()
    def geometry(self, cloud: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One (3, H, W) cloud -> groups (G, M, 3), centres (G, 3), pooling operator, patch validity."""
        valid = (cloud != 0).all(dim=0)
        points = cloud.permute(1, 2, 0)[valid]  # (N, 3), row-major
        g, m = self.num_group, self.group_size
        if len(points) == 0:  # nothing seen: zero features, every patch invalid
            zeros = cloud.new_zeros((g, m, 3))
            op = torch.sparse_coo_tensor(torch.zeros((2, 0), dtype=torch.long, device=cloud.device),
                                         cloud.new_zeros(0), (self._grid ** 2, g))
            return zeros, cloud.new_zeros((g, 3)), op, torch.zeros(self._grid ** 2, dtype=torch.bool, device=cloud.device)
        groups, centres = group(points, g, m)
        op, patch_valid = pooling_operator(valid, centres, points, self._grid)
        return groups, centres, op, patch_valid

    def extract(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> patch features (B, grid^2, 1152) and their validity (B, grid^2)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise BenchError(f"Point-MAE takes organised clouds as (B, 3, H, W) x/y/z, got {tuple(x.shape)}")
        geo = [self.geometry(c) for c in x]
        feats = self.backbone(torch.stack([g[0] for g in geo]), torch.stack([g[1] for g in geo]))  # (B, G, 1152)
        patches = torch.stack([torch.sparse.mm(g[2], f) for g, f in zip(geo, feats)])
        return patches, torch.stack([g[3] for g in geo])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extract(x)[0]


# ---------------------------------------------------------------------------------------------
# weights


def _cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / CHECKPOINT_FILE


def checkpoint_path(weights: str) -> Path:
    """The file ``weights`` names: the cached ShapeNet checkpoint (downloaded when missing) or a path."""
    if weights == SHAPENET:
        cached = _cache_file()
        if not cached.is_file():
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                print(f"downloading Point-MAE ShapeNet weights to {cached}", file=sys.stderr)
                torch.hub.download_url_to_file(CHECKPOINT_URL, str(cached), progress=False)
            except Exception as e:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise BenchError(
                    f"Point-MAE ShapeNet weights not found at {cached} and could not be downloaded ({reason}): "
                    f"put Point-MAE's pretrain.pth ({CHECKPOINT_URL}) there, or pass --weights PATH to it "
                    "(--weights random for random weights)") from None
        return cached
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BenchError(f"Point-MAE weights file '{weights}' not found: pass '{SHAPENET}' (Point-MAE's "
                         f"{CHECKPOINT_FILE} in {_cache_file().parent}), 'random', or the path of that file")
    return path.resolve()


def encoder_state_dict(obj: object, where: str) -> dict[str, torch.Tensor]:
    """The encoder's tensors from a Point-MAE checkpoint (``base_model`` -> ``MAE_encoder.*``, an
    optional ``module.`` prefix) or from a state dict already in this module's names."""
    if isinstance(obj, Mapping) and isinstance(obj.get("base_model"), Mapping):
        obj = obj["base_model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchError(f"{where} is not a Point-MAE checkpoint (a state dict under 'base_model')")
    sd = {k.removeprefix("module."): v for k, v in obj.items()}
    if any(k.startswith("MAE_encoder.") for k in sd):  # the pretraining model: keep the encoder
        sd = {k[len("MAE_encoder."):]: v for k, v in sd.items() if k.startswith("MAE_encoder.")}
    return sd


def load_weights(model: PointMAE, weights: str) -> None:
    path = checkpoint_path(weights)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BenchError(f"cannot read Point-MAE weights file '{path}' ({type(e).__name__}: {msg})") from None
    sd = encoder_state_dict(obj, f"weights file '{path}'")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BenchError(f"weights file '{path}' does not fit Point-MAE's encoder: missing '{missing[0]}'{more} "
                         "(expected Point-MAE's pretrain.pth, keys MAE_encoder.* under base_model)")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise BenchError(f"weights file '{path}' does not fit Point-MAE's encoder: '{k}' has shape "
                             f"{tuple(sd[k].shape)}, expected {tuple(v.shape)}")
    model.load_state_dict({k: sd[k].to(v.dtype) for k, v in own.items()}, strict=True)


def describe_weights(weights: str) -> str:
    """Where the weights come from, for result rows (no download: a missing file says so)."""
    if weights == "random":
        return "random (Point-MAE's init, seeded by the cell's seed)"
    path = _cache_file() if weights == SHAPENET else Path(weights).expanduser()
    if not path.is_file():
        return f"{weights} (missing)"
    st = path.stat()
    digest = file_sha256(str(path.resolve()), st.st_mtime_ns, st.st_size)[:12]
    what = "Point-MAE ShapeNet " if weights == SHAPENET else ""
    return f"{what}file:{path.resolve()} sha256:{digest}"
