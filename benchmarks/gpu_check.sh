#!/usr/bin/env bash
# One short GPU check for a bare CUDA machine with no network (torch, pytorch-lightning, torchmetrics,
# pandas and pytest installed; jsonargparse not). Prepare first with benchmarks/gpu_prepare.sh, then run
# from the checkout root:
#   bash benchmarks/gpu_check.sh            # OUT=dir keeps the results; DATA_ROOT=dir holding ml-100k/
# Steps (STEPS= runs a subset, in its order), each under its own time cap (STEP_CAP_SCALE scales them):
#   startup      benchmarks/startup.py with --by-package (imports and CUDA set-up, stage by stage, while the
#                disk cache is cold). Where the core packages have no bytecode cache it runs twice more
#                with PYTHONDONTWRITEBYTECODE unset and PYTHONPYCACHEPREFIX set (the first fills the cache),
#                and every later step keeps that setting; where the first run wrote the cache, once more.
#                Then once more (with the prefix: twice) in a lean venv (benchmarks/lean_env.py: only this
#                project's dependencies, linked from the image, so torchmetrics finds no transformers or
#                torchvision to import).
#   gcn_dot      `fit` + `test` of configs/gcn_dot.yaml on one GPU, wall time from process start.
#   gcn_dot_lean the same in the lean venv (built here if the startup step did not run).
#   gcn_dot_profile  the same fit (in the lean venv where it builds) under Lightning's SimpleProfiler:
#                its busiest hooks' total seconds.
#   pytest       the GPU-marked tests.
#   step         speed.py's layer, step, optimizer (fused Adam against torch's foreach default), host syncs
#                per step, and a torch.profiler table of each config's bare step (device time by operator).
#   ml100k_best  `fit` + `test` of configs/ml100k_best.yaml.
#   scaling      speed.py's scaling at 25M/10M/1M ratings with PyG's GCNConv beside it (--pyg; its columns
#                are left out where torch_geometric is missing), one size per process, largest first.
# Measured on an H200: scaling 295 s and the other steps about 185 s, before the startup step grew its
# extra runs (each a fresh process that imports everything twice, --by-package's child included: about
# 20-40 s each there) and the lean and profiled fits were added; all of them now outlast one 10-minute
# device command: run the scaling step in a call of its own when it is needed. $OUT gets summary.md (a
# line per step, appended as steps end) and logs.tgz (every log and table, refreshed after each step), so
# a run cut short keeps what it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
WORK="${WORK:-/tmp/gpu_check_work}"  # every log; $OUT keeps summary.md and logs.tgz (few files come back)
DATA_ROOT="${DATA_ROOT:-.gpu-data}"
TRAINER_CONFIG="${TRAINER_CONFIG:-configs/trainer/gpu.yaml}"  # another file (and SPEED_DEVICE=cpu) dry-runs it on CPU
SPEED_DEVICE="${SPEED_DEVICE:-cuda}"
CAP_SCALE="${STEP_CAP_SCALE:-1}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT" && rm -rf "$WORK" && mkdir -p "$WORK"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

if ! "$PY" -c "import jsonargparse, docstring_parser, typeshed_client" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlgnn-site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/mlgnn-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the project itself, without installing it
LEAN=/tmp/mlgnn-lean  # benchmarks/lean_env.py's venv: jsonargparse is linked in, so only the project on PYTHONPATH
rm -rf "$LEAN"  # built afresh by each run (a warm machine keeps /tmp between calls)

card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
# Versions from the installed metadata and torch/version.py, without importing torch or Lightning: the
# startup step below must be the first to load them (cold disk, no bytecode written yet).
versions=$("$PY" - <<'PY'
import importlib.metadata as md, importlib.util, pathlib, re
text = (pathlib.Path(importlib.util.find_spec("torch").origin).parent / "version.py").read_text()
cuda = re.search(r"^cuda[^=]*= *'?([^'\n]*)'?", text, re.M)
print(f"torch {md.version('torch')}, lightning {md.version('pytorch-lightning')}, cuda {cuda.group(1) if cuda else '?'}")
PY
)
{ echo "## GPU check: $card ($versions)"; echo "| step | result |"; echo "|---|---|"; } > "$OUT/summary.md"
cat "$OUT/summary.md"
record() { echo "$1" | tee -a "$OUT/summary.md"; cp "$OUT/summary.md" "$WORK/"; tar czf "$OUT/logs.tgz" -C "$WORK" .; }
cap() { "$PY" -c "print(int($1 * $CAP_SCALE))"; }  # seconds for a step, scaled
since() { "$PY" -c "print(f'{$(date +%s.%N) - $1:.1f}')"; }

speed() {  # speed() LABEL CAP ARGS...: benchmarks/speed.py on the GPU, its table into $WORK/speed_LABEL.md
  local label=$1 limit; limit=$(cap "$2"); shift 2
  timeout "$limit" "$PY" benchmarks/speed.py --device "$SPEED_DEVICE" --data-root "$DATA_ROOT" "$@" > "$WORK/speed_$label.md" 2>&1
  local status=$?
  record "| speed.py $label | exit $status$([ $status -eq 124 ] && echo " (cut at ${limit}s)"), table in speed_$label.md |"
  cat "$WORK/speed_$label.md"
}

fit_and_test() {  # fit_and_test CONFIG CAP [LABEL [PYTHON... [-- FIT OPTIONS...]]]: fit on one GPU (wall from
  local config=$1 name limit; name=$(basename "$1" .yaml); limit=$(cap "$2")  # process start), test its best
  local label=${3:-$name}; shift $(( $# < 3 ? $# : 3 ))  # checkpoint
  local python=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do python+=("$1"); shift; done
  [ $# -gt 0 ] && shift && extra=("$@")
  [ ${#python[@]} -gt 0 ] || python=("$PY")
  local common=(--config "$config" --config "$TRAINER_CONFIG" --data.root "$DATA_ROOT" --data.cache_dir /tmp/mlgnn-cache)
  local start; start=$(date +%s.%N)
  timeout "$limit" "${python[@]}" -m movielens_gnn fit "${common[@]}" --trainer.logger.init_args.save_dir "$WORK/logs_$label" \
    ${extra[@]+"${extra[@]}"} > "$WORK/fit_$label.log" 2>&1
  local status=$? wall; wall=$(since "$start")
  local best; best=$(grep -o "Best checkpoint: [^ ]*" "$WORK/fit_$label.log" | tail -1 | cut -d' ' -f3)
  if [ "$status" -ne 0 ] || [ -z "$best" ]; then
    record "| fit $label | FAILED (exit $status after ${wall}s), see fit_$label.log |"
    tail -20 "$WORK/fit_$label.log"; return
  fi
  timeout "$(cap 60)" "${python[@]}" -m movielens_gnn test "${common[@]}" --ckpt_path "$best" \
    --trainer.logger.init_args.save_dir "$WORK/test_logs_$label" > "$WORK/test_$label.log" 2>&1
  # From the runs' metrics.csv, never the printed tables (rich draws them as boxes on the CUDA images).
  local figures; figures=$("$PY" - "$WORK/logs_$label/$name" "$WORK/test_logs_$label/$name" <<'PY'
import csv, glob, sys
def rows(folder):
    return [r for f in sorted(glob.glob(f"{folder}/version_*/metrics.csv")) for r in csv.DictReader(open(f))]
fit, test = rows(sys.argv[1]), rows(sys.argv[2])
epochs = len({r["epoch"] for r in fit if r.get("val_rmse")})
rmse = [r["test_rmse"] for r in test if r.get("test_rmse")]
print(f"{epochs} validated epochs, test_rmse {float(rmse[-1]):.4f}" if rmse else f"{epochs} validated epochs, test_rmse ?")
PY
)
  # The fit's own account of its time (movielens_gnn/progress.py): epochs, start-up before the first, and
  # the start-up's causes where it took over 5 s.
  local timing; timing=$(grep -o "trained [0-9]* epochs in .*" "$WORK/fit_$label.log" | tail -1)
  record "| fit $label | ${wall}s wall from process start, best ${best##*/}, $figures; ${timing:-no timing line} |"
}

lean_ready() {  # builds the lean venv once and sets LEAN_PY, the command running its Python with the
  # project; records a failed build and returns 1
  [ -x "$LEAN/bin/python" ] || "$PY" benchmarks/lean_env.py "$LEAN" > "$WORK/lean_env.log" 2>&1 || {
    record "| lean venv | FAILED, see lean_env.log |"; cat "$WORK/lean_env.log" >&2; return 1; }
  LEAN_PY=(env "PYTHONPATH=$PWD" "$LEAN/bin/python")
}

startup() {  # startup LABEL PYTHON...: startup.py --by-package in that Python, its table into startup_LABEL.md
  local label=$1 by=${BY_PACKAGE---by-package}; shift  # BY_PACKAGE= leaves the child's import profile out
  timeout "$(cap 90)" "$@" benchmarks/startup.py --device "$SPEED_DEVICE" $by > "$WORK/startup_$label.md" 2>&1
  local status=$? ready; ready=$(grep -o "first CSR product[^|]*| [0-9.]* | [0-9.]*" "$WORK/startup_$label.md" | awk '{print $NF}')
  local facts; facts=$(grep -e "^Bytecode cache" -e "^Unused extras" "$WORK/startup_$label.md" | sed 's/ *$//' | paste -sd ';' | sed 's/;/; /g')
  record "| startup.py $label | exit $status, ${ready:-?}s from process start to a ready device; $facts; table in startup_$label.md |"
  cat "$WORK/startup_$label.md"
}

STEPS="${STEPS:-startup gcn_dot gcn_dot_lean gcn_dot_profile pytest step ml100k_best scaling}"  # a subset reruns only those
for step in $STEPS; do
  case $step in
    scaling)  # one size per run, largest first, so a run cut short keeps the sizes it finished
      for size in $(echo "${SCALING_SIZES:-25m,10m,1m}" | tr , ' '); do
        speed "scaling_$size" 150 --sections scaling --scaling-sizes "$size" --pyg --repeats 50
      done ;;
    startup)  # first, while the disk cache is cold
      startup image "$PY"
      if ! grep -q "^Bytecode cache missing after loading: none " "$WORK/startup_image.md"; then
        unset PYTHONDONTWRITEBYTECODE  # so Python writes its cache, in a folder of its own:
        export PYTHONPYCACHEPREFIX=/tmp/mlgnn-pyc  # kept by every later step, the lean venv's too
        BY_PACKAGE= startup pycache_fill "$PY"  # a run that fills the cache: its stages suffice
        startup pycache "$PY"
      elif ! grep -q "^Bytecode cache written by this process: none " "$WORK/startup_image.md"; then
        startup image_again "$PY"  # the first run compiled and kept the cache: time a start that reads it
      fi
      if lean_ready; then
        # Under a cache prefix the venv's paths are new ones to cache: fill first, as above.
        [ -n "${PYTHONPYCACHEPREFIX:-}" ] && BY_PACKAGE= startup lean_fill "${LEAN_PY[@]}"
        startup lean "${LEAN_PY[@]}"
      fi ;;
    gcn_dot_profile)  # the same fit under Lightning's SimpleProfiler: where its epochs go, hook by hook
      py=("$PY"); lean_ready && py=("${LEAN_PY[@]}")
      fit_and_test configs/gcn_dot.yaml 90 gcn_dot_profile "${py[@]}" -- --trainer.profiler pytorch_lightning.profilers.SimpleProfiler \
        --trainer.profiler.init_args.dirpath "$WORK" --trainer.profiler.init_args.filename gcn_dot_profile
      record "| profile of fit gcn_dot_profile | $("$PY" - "$WORK/fit-gcn_dot_profile.txt" <<'PY'
import re, sys
rows = []  # SimpleProfiler's own text file: | action | mean s | calls | total s | percent |
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 5 and cells[0] not in ("Action", "Total"):
        name = re.sub(r"\{.*\}", "", cells[0])  # callbacks' state dicts, left out
        rows.append((float(cells[3]), name, float(cells[1]), int(cells[2])))
print("; ".join(f"{name} {total:.2f} s ({calls} x {1e3 * mean:.1f} ms)" for total, name, mean, calls in sorted(rows, reverse=True)[:8]))
PY
) |" ;;
    gcn_dot_lean) lean_ready && fit_and_test configs/gcn_dot.yaml 90 gcn_dot_lean "${LEAN_PY[@]}" ;;
    gcn_dot|ml100k_best) fit_and_test "configs/$step.yaml" 90 ;;
    pytest)
      timeout "$(cap 90)" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests > "$WORK/pytest_gpu.log" 2>&1
      record "| pytest -m gpu | exit $?: $(tail -1 "$WORK/pytest_gpu.log" | tr -d '=') |" ;;
    step) speed step 150 --sections layer,step,optimizer,syncs,profile --repeats 50 ;;
  esac
done
echo; cat "$OUT/summary.md"
