#!/usr/bin/env bash
# One short GPU check for a bare CUDA machine with no network (torch, pytorch-lightning, torchmetrics,
# pandas and pytest installed; jsonargparse not). Prepare first with benchmarks/gpu_prepare.sh, then run
# from the checkout root:
#   bash benchmarks/gpu_check.sh            # OUT=dir keeps the logs; DATA_ROOT=dir holding ml-100k/
# First benchmarks/startup.py (imports and CUDA set-up, stage by stage, while the disk cache is cold), then
# issue 15's GPU figures, so a run cut short still brings them back: benchmarks/speed.py's scaling
# at the 1M/10M/25M sizes with PyG's GCNConv beside it (--pyg; its columns are left out where
# torch_geometric is missing), then `fit` + `test` of configs/gcn_dot.yaml on one GPU (wall time from
# process start), the GPU-marked tests, speed.py's layer, step, optimizer (fused Adam against torch's
# foreach default) and host syncs per step, and last the fit + test of configs/ml100k_best.yaml.
# Every step runs under its own time cap (STEP_CAP_SCALE scales them) and appends a line to
# $OUT/summary.md as it ends. About 8 minutes on an H200 (measured: the scaling step 295 s, the rest 185 s).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
DATA_ROOT="${DATA_ROOT:-.gpu-data}"
TRAINER_CONFIG="${TRAINER_CONFIG:-configs/trainer/gpu.yaml}"  # another file (and SPEED_DEVICE=cpu) dry-runs it on CPU
SPEED_DEVICE="${SPEED_DEVICE:-cuda}"
CAP_SCALE="${STEP_CAP_SCALE:-1}"
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
{ echo "## GPU check: $card ($versions)"; echo "| step | result |"; echo "|---|---|"; } > "$OUT/summary.md"
cat "$OUT/summary.md"
record() { echo "$1" | tee -a "$OUT/summary.md"; }
cap() { "$PY" -c "print(int($1 * $CAP_SCALE))"; }  # seconds for a step, scaled
since() { "$PY" -c "print(f'{$(date +%s.%N) - $1:.1f}')"; }

speed() {  # speed() LABEL CAP ARGS...: benchmarks/speed.py on the GPU, its table into $OUT/speed_LABEL.md
  local label=$1 limit; limit=$(cap "$2"); shift 2
  timeout "$limit" "$PY" benchmarks/speed.py --device "$SPEED_DEVICE" --data-root "$DATA_ROOT" "$@" > "$OUT/speed_$label.md" 2>&1
  local status=$?
  record "| speed.py $label | exit $status$([ $status -eq 124 ] && echo " (cut at ${limit}s)"), table in speed_$label.md |"
  cat "$OUT/speed_$label.md"
}

fit_and_test() {  # fit_and_test CONFIG CAP: fit on one GPU (wall from process start), test its best checkpoint
  local config=$1 name limit; name=$(basename "$1" .yaml); limit=$(cap "$2")
  local common=(--config "$config" --config "$TRAINER_CONFIG" --data.root "$DATA_ROOT" --data.cache_dir /tmp/mlgnn-cache)
  local start; start=$(date +%s.%N)
  timeout "$limit" "$PY" -m movielens_gnn fit "${common[@]}" --trainer.logger.init_args.save_dir "$OUT/logs" > "$OUT/fit_$name.log" 2>&1
  local status=$? wall; wall=$(since "$start")
  local best; best=$(grep -o "Best checkpoint: [^ ]*" "$OUT/fit_$name.log" | tail -1 | cut -d' ' -f3)
  if [ "$status" -ne 0 ] || [ -z "$best" ]; then
    record "| fit $name | FAILED (exit $status after ${wall}s), see fit_$name.log |"
    tail -20 "$OUT/fit_$name.log"; return
  fi
  timeout "$(cap 60)" "$PY" -m movielens_gnn test "${common[@]}" --ckpt_path "$best" \
    --trainer.logger.init_args.save_dir "$OUT/test_logs" > "$OUT/test_$name.log" 2>&1
  # From the runs' metrics.csv, never the printed tables (rich draws them as boxes on the CUDA images).
  local figures; figures=$("$PY" - "$OUT/logs/$name" "$OUT/test_logs/$name" <<'PY'
import csv, glob, sys
def rows(folder):
    return [r for f in sorted(glob.glob(f"{folder}/version_*/metrics.csv")) for r in csv.DictReader(open(f))]
fit, test = rows(sys.argv[1]), rows(sys.argv[2])
epochs = len({r["epoch"] for r in fit if r.get("val_rmse")})
rmse = [r["test_rmse"] for r in test if r.get("test_rmse")]
print(f"{epochs} validated epochs, test_rmse {float(rmse[-1]):.4f}" if rmse else f"{epochs} validated epochs, test_rmse ?")
PY
)
  # The fit's own account of its time (movielens_gnn/progress.py): epochs, and start-up before the first.
  local timing; timing=$(grep -o "trained [0-9]* epochs in .*" "$OUT/fit_$name.log" | tail -1)
  record "| fit $name | ${wall}s wall from process start, best ${best##*/}, $figures; ${timing:-no timing line} |"
}

STEPS="${STEPS:-startup scaling gcn_dot pytest step ml100k_best}"  # a subset reruns only those
for step in $STEPS; do
  case $step in
    scaling)  # one size per run, largest first, so a run cut short keeps the sizes it finished
      for size in $(echo "${SCALING_SIZES:-25m,10m,1m}" | tr , ' '); do
        speed "scaling_$size" 150 --sections scaling --scaling-sizes "$size" --pyg --repeats 50
      done ;;
    startup)  # first, while the disk cache is cold: imports and CUDA set-up, stage by stage
      timeout "$(cap 60)" "$PY" benchmarks/startup.py --device "$SPEED_DEVICE" > "$OUT/startup.md" 2>&1
      record "| startup.py | exit $?, $(grep -o "first CSR product[^|]*| [0-9.]* | [0-9.]*" "$OUT/startup.md" | awk '{print $NF}')s from process start to a ready device, table in startup.md |"
      cat "$OUT/startup.md" ;;
    gcn_dot|ml100k_best) fit_and_test "configs/$step.yaml" 90 ;;
    pytest)
      timeout "$(cap 90)" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests > "$OUT/pytest_gpu.log" 2>&1
      record "| pytest -m gpu | exit $?: $(tail -1 "$OUT/pytest_gpu.log" | tr -d '=') |" ;;
    step) speed step 120 --sections layer,step,optimizer,syncs --repeats 50 ;;
  esac
done
echo; cat "$OUT/summary.md"
