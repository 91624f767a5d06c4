#!/usr/bin/env bash
# Stage what benchmarks/gpu_check.sh needs on a bare GPU machine without network, inside the checkout
# (both folders are git-ignored; carry them along with the working tree):
#   .whl/       pure-Python wheels the usual CUDA images lack: jsonargparse and its `signatures` extras
#   .gpu-data/  a copy of ml-100k/ from DATA_ROOT (default ../shared/datasets)
# Run it here, with pip and the data at hand:  bash benchmarks/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT="${DATA_ROOT:-../shared/datasets}"
PY="${PYTHON:-python3}"
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl \
  "jsonargparse==4.53.0" "docstring_parser==0.18.0" "typeshed_client==2.15.0"
rm -rf .gpu-data && mkdir -p .gpu-data
cp -r "$DATA_ROOT/ml-100k" .gpu-data/ml-100k
du -sh .whl .gpu-data
