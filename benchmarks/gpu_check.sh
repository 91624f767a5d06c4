#!/usr/bin/env bash
# One short GPU check for a bare CUDA machine with no network (torch, pytorch-lightning, torchmetrics,
# pandas and pytest installed; jsonargparse not). Prepare first with benchmarks/gpu_prepare.sh, then run
# from the checkout root:
#   bash benchmarks/gpu_check.sh            # OUT=dir keeps the logs; DATA_ROOT=dir holding ml-100k/
# It runs the GPU-marked tests, a `fit` + `test` of each model config on one GPU (wall time from process
# start), and benchmarks/speed.py on the GPU: layer, step, optimizer (fused Adam against torch's foreach
# default), host syncs per step, then scaling at the 1M/10M/25M sizes with PyG's GCNConv beside it (--pyg;
# its columns are left out where torch_geometric is missing). Issue 15's GPU figures come from these: the 25M epoch, PyG / ours at 10M and 25M, u1 gcn_dot
# fit wall. Estimated 6-8 minutes on an H200 (not yet run there): give the device call timeout_s 600.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
DATA_ROOT="${DATA_ROOT:-.gpu-data}"
TRAINER_CONFIG="${TRAINER_CONFIG:-configs/trainer/gpu.yaml}"  # another file (and SPEED_DEVICE=cpu) dry-runs it on CPU
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

if ! "$PY" -c "import jsonargparse, docstring_parser, typeshed_client" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlgnn-site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/mlgnn-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the project itself, without installing it

card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
versions=$("$PY" -c "import torch, pytorch_lightning as pl; print(f'torch {torch.__version__}, lightning {pl.__version__}, cuda {torch.version.cuda}')")
echo "card: $card"; echo "$versions"

summary=()
"$PY" -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -3
summary+=("| pytest -m gpu | $(tail -1 "$OUT/pytest_gpu.log" | tr -d '=') |")

for config in configs/gcn_dot.yaml configs/ml100k_best.yaml; do
  [ -f "$config" ] || continue
  name=$(basename "$config" .yaml)
  common=(--config "$config" --config "$TRAINER_CONFIG" --data.root "$DATA_ROOT" --data.cache_dir /tmp/mlgnn-cache)
  start=$(date +%s.%N)
  "$PY" -m movielens_gnn fit "${common[@]}" --trainer.logger.init_args.save_dir "$OUT/logs" > "$OUT/fit_$name.log" 2>&1
  status=$?
  wall=$("$PY" -c "print(f'{$(date +%s.%N) - $start:.1f}')")
  best=$(grep -o "Best checkpoint: [^ ]*" "$OUT/fit_$name.log" | tail -1 | cut -d' ' -f3)
  epochs=$(grep -c . "$OUT"/logs/"$name"/version_*/metrics.csv 2>/dev/null | tail -1 | cut -d: -f2)
  if [ "$status" -eq 0 ] && [ -n "$best" ]; then
    "$PY" -m movielens_gnn test "${common[@]}" --ckpt_path "$best" \
      --trainer.logger.init_args.save_dir "$OUT/test_logs" > "$OUT/test_$name.log" 2>&1
    # From the run's metrics.csv, never the printed table (rich draws it as boxes on the CUDA images).
    rmse=$("$PY" -c "import csv, glob, sys; rows = [r for f in glob.glob(sys.argv[1]) for r in csv.DictReader(open(f)) if r.get('test_rmse')]; print(f\"{float(rows[-1]['test_rmse']):.4f}\" if rows else '')" "$OUT/test_logs/$name/version_*/metrics.csv")
    summary+=("| fit $name (GPU) | exit $status, ${wall}s wall, best ${best##*/}, test_rmse ${rmse:-?} |")
  else
    summary+=("| fit $name (GPU) | FAILED (exit $status), see $OUT/fit_$name.log |")
    tail -20 "$OUT/fit_$name.log"
  fi
done

if [ -f benchmarks/speed.py ]; then
  "$PY" benchmarks/speed.py --device "${SPEED_DEVICE:-cuda}" --data-root "$DATA_ROOT" --sections layer,step,optimizer,syncs,scaling \
    --scaling-sizes "${SCALING_SIZES:-1m,10m,25m}" --pyg --repeats 50 > "$OUT/speed.md" 2>&1
  summary+=("| benchmarks/speed.py --device cuda | exit $?, table in $OUT/speed.md |")
  cat "$OUT/speed.md"
fi

echo
echo "## GPU check: $card ($versions)"
echo "| step | result |"
echo "|---|---|"
printf '%s\n' "${summary[@]}"
