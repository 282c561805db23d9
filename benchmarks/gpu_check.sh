#!/usr/bin/env bash
# The GPU checks of the issue "a whole paper table on one GPU", as one script for a lent GPU
# machine (fresh, no internet, ~15 minutes of device time in all). Each step is bounded and its
# output goes to $OUT (or ./gpu-check/) so a partial run still reports:
#   1. install; FAISS GPU wheel for torch's CUDA major (python -m bench.faiss_gpu --install)
#   2. bench doctor --device cuda: CPU vs GPU rows; every search backend vs exact float64 search
#   3. perf_table: PatchCore + the TTA rows of TTAD Table 1 on all 15 stand-in categories, then
#      RD4AD / GNL at 200 / 20 epochs on two categories (projected to 15), GPU utilisation
#   4. ray_nodes: fractional --gpus-per-cell 0.25 on one and two Ray nodes vs in-process rows
#   5. pointmae (only when named in STEPS): TTAD on Point-MAE at Table 2's size (1,024 groups x 128
#      points, 30 epochs, batch 10) on the MVTec 3D-AD stand-in; random weights unless POINTMAE_WEIGHTS=shapenet
#      (the ShapeNet file in torch hub's checkpoint folder) or a path
# Usage: bash benchmarks/gpu_check.sh [quick]   (quick: step 3's TTA rows on 2 categories, trained rows on 1)
#        STEPS="install doctor" bash benchmarks/gpu_check.sh   (some steps: calls of at most 10 minutes)
# A lent machine that reaches no package index: `python benchmarks/device_wheels.py table` here packs
# the wheels it lacks into .whl/call1, .whl/call2 and prints the two calls to make (install then
# reassembles and installs what was carried); without .whl the install step uses the index.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}; mkdir -p "$OUT"
export ADSHIFT_BENCH_CACHE=${ADSHIFT_BENCH_CACHE:-$PWD/.gpu-cache}
QUICK=${1:-}
STEPS=${STEPS:-install doctor table_tta table_trained ray}
step() { local name=$1 limit=$2; shift 2; [[ " $STEPS " == *" $name "* ]] || return 0; echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/summary.txt"
         local t0=$SECONDS; timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
         echo "   rc $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"; tail -25 "$OUT/$name.log"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
if [ -d .whl ] || [ -d "${ADSHIFT_WHEELHOUSE:-/tmp/adshift-wheels}" ]; then
  step install 300 python benchmarks/device_wheels.py --install
else
  step install 300 bash -c "pip install -q -e '.[ray,3d]' && python -m bench.faiss_gpu --install"
fi
# quick (one 15-minute lease): TTA rows on 2 categories, trained rows on toothbrush (60 training images)
# (limits within device_wheels.py's call timeouts: 480 s for install + TTA, 420 s for install + doctor + trained)
if [ "$QUICK" = quick ]; then TTA_CATEGORIES=toothbrush,metal_nut; TTA_LIMIT=420; TRAINED_CATEGORIES=toothbrush; TRAINED_LIMIT=240
else TTA_CATEGORIES=all; TTA_LIMIT=600; TRAINED_CATEGORIES=toothbrush,metal_nut; TRAINED_LIMIT=540; fi
step doctor 120 bench doctor --device cuda --epochs 3
step table_tta $TTA_LIMIT python benchmarks/perf_table.py --device cuda --categories $TTA_CATEGORIES \
     --methods patchcore,ttt++,ttac,ttad --json "$OUT/table_tta.json"
step table_trained $TRAINED_LIMIT python benchmarks/perf_table.py --device cuda --categories $TRAINED_CATEGORIES \
     --methods rd4ad,gnl --json "$OUT/table_trained.json"
step ray 420 python benchmarks/ray_nodes.py --device cuda --gpus-per-cell 0.25 --cpus-per-node 4 \
     --cpus-per-cell 1 --threads 1
M3D=$ADSHIFT_BENCH_CACHE/mvtec3d_standin
step pointmae 420 bash -c "python -m bench.datasets.standins mvtec3d $M3D --categories bagel && bench grid \
     --methods patchcore_pointmae,ttad_pointmae --dataset mvtec3d --root $M3D --categories bagel \
     --corruptions point_gaussian_noise --severities 5 --weights ${POINTMAE_WEIGHTS:-random} --device cuda --no-progress --out $OUT/pointmae"
cat "$OUT/summary.txt"
