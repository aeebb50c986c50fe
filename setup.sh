#!/usr/bin/env bash
# Idempotent set-up: creates .venv with CPU torch, mmcv 2.1.0 built with its ops, and mtpd.
# A second run checks a stamp and returns in seconds. Called by `make demo` and `make test`.
# On a GPU cluster use environment.yml instead (see workflow/profiles/slurm/README.md).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
VENV=${MTPD_VENV:-.venv}
stamp="$VENV/.mtpd-setup-stamp"
want=$(cat setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$VENV/bin/python" -c "import mtpd, mmcv.ops" 2>/dev/null; then
  exit 0
fi

t0=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade "pip>=24" 
# CPU torch (a local wheel on this machine; PyPI's CPU/CUDA build elsewhere).
pip install -q "torch==${MTPD_TORCH_VERSION:-2.13.0}"
# Build tools for mmcv's C++ ops, after torch (torch pulls a newer setuptools): mmcv's setup.py
# still imports pkg_resources, which setuptools >= 81 no longer has.
pip install -q "setuptools==69.5.1" wheel ninja psutil
# mmcv 2.1.0 is source-only: build it against the torch above, with ops (nms, roi_align).
# pip caches the built wheel, so only the first set-up on a machine pays for it (~6 min).
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} pip install --no-build-isolation "mmcv==2.1.0"
fi
# mtpd pins setuptools back into >=77,<81 (torch needs >= 77; MMEngine's `mmdet::` config
# scope needs pkg_resources, gone in 81).
pip install -q --no-build-isolation -e ".[test]"
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mtpd, pkg_resources; from mmcv.ops import nms, roi_align"
echo "$want" > "$stamp"
echo "mtpd set-up done in $(( $(date +%s) - t0 )) s"
