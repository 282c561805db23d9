#!/usr/bin/env bash
# Do the lower bounds in pyproject.toml still work? Installs every direct dependency (and the test
# extra's) at the lowest version its bound allows (uv's lowest-direct resolution) for the oldest
# Python the README names, in a fresh venv, and runs the fast tests there. Rerun it when a bound
# or the code that leans on a library changes; README "Python >= 3.10" quotes its last result.
#
# Usage: bash benchmarks/floors_check.sh [PYTHON]   (default: python3.10 on PATH)
#        WORK=/tmp/floors bash benchmarks/floors_check.sh ~/.pyenv/versions/3.10.13/bin/python3
# Needs PyPI (uv is installed from it into $WORK); about 5 minutes on 2 cores. Leaves $WORK behind
# (its venv is several GB): remove it when done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3.10}
WORK=${WORK:-$(mktemp -d -t floors-XXXX)}
export UV_CACHE_DIR=$WORK/uv-cache
"$PY" -m venv "$WORK/venv"
python3 -m venv "$WORK/uv" && "$WORK/uv/bin/pip" install -q uv
UV="$WORK/uv/bin/uv"
# the oldest Python's own version: uv resolves for it (wheels that exist for it)
PYV=$("$WORK/venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$UV" pip compile pyproject.toml --extra test --resolution lowest-direct --python "$WORK/venv/bin/python" \
      --python-version "$PYV" -o "$WORK/lowest.txt" --quiet
"$UV" pip install --quiet --python "$WORK/venv/bin/python" -r "$WORK/lowest.txt"
"$UV" pip install --quiet --python "$WORK/venv/bin/python" --no-deps -e .
echo "== at the floors (Python $PYV):"
grep -E '^(torch|torchvision|numpy|faiss-cpu|timm|typer|rich|jinja2|pandas|scipy|pyarrow|scikit-learn|scikit-image|numba|pillow|matplotlib)==' "$WORK/lowest.txt" | tr '\n' ' '
echo
ADSHIFT_BENCH_CACHE=$WORK/cache "$WORK/venv/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider -rs
echo "(venv and caches in $WORK)"
