#!/usr/bin/env bash
# The whole GPU check in one command (under 8 minutes on one H100/H200); everything it learns is JSON under $OUT.
#
#   On the lent GPU machine (from the repository root, with .whl/ carried; see ../shared/device/README.md):
#     benchmarks/gpu_check.sh                    # OUT defaults to $OUT (the device's return folder) or ./gpu_check_out
#   Here, before sending it (fills .whl/ with what the GPU image lacks; pure-Python wheels):
#     ../shared/device/make-wheels.sh pydicom
#   In the test suite (seconds, tiny sizes, CPU, no wheels):
#     benchmarks/gpu_check.sh --cpu-smoke --out /tmp/smoke
#
# Parts (each time-boxed; a part that fails or times out is reported and the others still run):
#   install     the carried wheels into .site (skipped when .whl/ is absent, e.g. --cpu-smoke)
#   imports     every module the check needs imports (a missing wheel shows up here, by name)
#   env         nvidia-smi, torch / CUDA / cuDNN versions, commit
#   pytest_gpu  python -m pytest -m gpu on the test files that hold gpu-marked tests (junit XML -> counts, failures)
#   train_throughput / synthesis_latency   the benchmark scripts with --device cuda
#   phantom     the default-preset phantom (started in the background at the beginning, it overlaps the above)
#   train       configs/pix2pix_t2_stir.yaml as shipped (bf16, channels_last, compile), time-boxed; validation
#               every VAL_EVERY steps writes best.pt, so a run stopped by the time box still leaves a checkpoint
#   synthesize  best.pt on the held-out TEST subjects (run/splits.json)
#   evaluate    synthseq evaluate: image and lesion-level metrics with 95 % CIs against real STIR, baselines fit
#               on the training subjects
# Then benchmarks/gpu_check_summary.py writes $OUT/gpu_check.json and prints a one-screen summary.
# Exit status: 0 when every part succeeded, 1 otherwise (the JSON says which).

set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
SMOKE=0
OUTDIR=${OUT:-$ROOT/gpu_check_out}
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) SMOKE=1 ;;
    --out) OUTDIR=$2; shift ;;
    --out=*) OUTDIR=${1#--out=} ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR/parts" "$OUTDIR/logs" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
export PYTHONUNBUFFERED=1
T_START=$(date +%s)

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu; BENCH_ARGS=(--device cpu --quick --threads 1)
  PRESET=tiny; SUBJECTS=6; STEPS=12; VAL_EVERY=6
  TRAIN_OVERRIDES=(train.device=cpu train.cpu_threads=1 train.batch_size=2 train.compile=false train.amp=false
                   data.image_size=32 "model.generator_kwargs.base_channels=4" "model.generator_kwargs.num_downs=5"
                   "model.discriminator_kwargs.base_channels=4" train.log_every=3 train.image_every=1000000)
  # generous: the suite may run on a loaded machine (the work itself is seconds of CPU per part)
  TO_IMPORTS=600; TO_PYTEST=600; TO_THROUGHPUT=600; TO_LATENCY=600; TO_PHANTOM=600; TO_TRAIN=600; TO_SYNTH=600
  TO_EVAL=600
  PYTEST_SELECT=(tests/models/test_generators.py)  # the -m gpu machinery on one small file (skipped: no CUDA)
  export OMP_NUM_THREADS=1
else
  DEVICE=cuda; BENCH_ARGS=(--device cuda)
  PRESET=default; SUBJECTS=${GPU_CHECK_SUBJECTS:-32}; STEPS=${GPU_CHECK_STEPS:-6000}; VAL_EVERY=250
  TRAIN_OVERRIDES=(train.device=cuda train.log_every=100 train.image_every=1000000)
  # (worst case, every part at its limit: about 8 min; the phantom runs in the background meanwhile)
  TO_IMPORTS=60; TO_PYTEST=60; TO_THROUGHPUT=100; TO_LATENCY=70; TO_PHANTOM=150; TO_TRAIN=${GPU_CHECK_TRAIN_S:-150}
  TO_SYNTH=35; TO_EVAL=40
  # the files holding gpu-marked tests (collecting the whole suite would import packages the GPU image lacks)
  mapfile -t PYTEST_SELECT < <(grep -rlE "mark\.gpu|pytest\.mark\.gpu" tests/ --include='*.py' | sort)
  [ ${#PYTEST_SELECT[@]} -gt 0 ] || PYTEST_SELECT=(tests/)
fi

# part NAME TIMEOUT_S CMD...: run CMD time-boxed, log to logs/NAME.log, status to parts/NAME.json
part() {
  local name=$1 limit=$2; shift 2
  local t0 t1 rc
  # GPU_CHECK_BREAK=NAME makes that part fail on purpose (the test checks that the others still run and report)
  if [ "${GPU_CHECK_BREAK:-}" = "$name" ]; then set -- sh -c "echo 'broken on purpose (GPU_CHECK_BREAK)'; exit 3"; fi
  echo "[gpu_check] $name (<= ${limit} s) ..." >&2
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$OUTDIR/logs/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  "$PY" - "$OUTDIR/parts/$name.json" "$name" "$rc" "$t0" "$t1" "$limit" "$OUTDIR/logs/$name.log" "$*" <<'EOF'
import json, sys
path, name, rc, t0, t1, limit, log, cmd = sys.argv[1:9]
rc = int(rc)
tail = open(log, errors="replace").read().splitlines()[-15:]
status = "ok" if rc == 0 else ("timeout" if rc in (124, 137) else "failed")
json.dump({"part": name, "status": status, "returncode": rc, "wall_s": round(float(t1) - float(t0), 2),
           "limit_s": int(limit), "command": cmd, "log_tail": tail}, open(path, "w"), indent=1)
EOF
  echo "[gpu_check] $name: rc=$rc in $(awk "BEGIN {printf \"%.0f\", $t1 - $t0}") s" >&2
  return $rc
}

# ---------------------------------------------------------------------------------------------- install
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ "$SMOKE" = 0 ]; then
  part install 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target .site .whl/*.whl
  export PYTHONPATH=$ROOT/.site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
else
  echo '{"part": "install", "status": "skipped", "reason": "no .whl/ folder (or --cpu-smoke)"}' \
    > "$OUTDIR/parts/install.json"
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi

# ------------------------------------------------------- phantom in the background (CPU work, overlaps the GPU)
PHANTOM=$WORK/phantom
part phantom "$TO_PHANTOM" nice -n 5 "$PY" -m synthseq.cli phantom --out "$PHANTOM" --subjects "$SUBJECTS" \
  --preset "$PRESET" --seed 0 &
PHANTOM_PID=$!

part imports "$TO_IMPORTS" "$PY" - "$OUTDIR/imports.json" <<'EOF'
import importlib, json, sys
mods = ["numpy", "scipy", "torch", "torchvision", "yaml", "monai", "kornia", "lpips", "nibabel", "pandas",
        "matplotlib", "pydicom", "synthseq.cli", "synthseq.training.loop", "synthseq.synthesis", "synthseq.evaluation",
        "synthseq.phantom", "synthseq.data.gpu"]
res = {}
for m in mods:
    try:
        importlib.import_module(m)
        res[m] = "ok"
    except Exception as exc:  # noqa: BLE001 - every failure is reported by name
        res[m] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
missing = {m: v for m, v in res.items() if v != "ok"}
json.dump({"modules": res, "missing": missing}, open(sys.argv[1], "w"), indent=1)
print(json.dumps(missing) if missing else "all imports ok")
sys.exit(1 if missing else 0)
EOF

part env "$TO_IMPORTS" "$PY" - "$OUTDIR/env.json" "$DEVICE" <<'EOF'
import json, subprocess, sys
sys.path.insert(0, "benchmarks")
from _common import environment
env = environment(sys.argv[2])
try:
    env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                                        "--format=csv,noheader"], capture_output=True, text=True,
                                       timeout=20).stdout.strip() or None
except (OSError, subprocess.TimeoutExpired):
    env["nvidia_smi"] = None
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env))
EOF

part pytest_gpu "$TO_PYTEST" "$PY" -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors \
  --junitxml="$OUTDIR/pytest_gpu.xml" "${PYTEST_SELECT[@]}"

part train_throughput "$TO_THROUGHPUT" "$PY" benchmarks/train_throughput.py "${BENCH_ARGS[@]}" \
  --out "$OUTDIR/train_throughput.json"
part synthesis_latency "$TO_LATENCY" "$PY" benchmarks/synthesis_latency.py "${BENCH_ARGS[@]}" \
  --out "$OUTDIR/synthesis_latency.json"

wait "$PHANTOM_PID"

# ------------------------------------------------------------------- real training, time-boxed, then held out
RUN=$WORK/run
part train "$TO_TRAIN" "$PY" train.py configs/pix2pix_t2_stir.yaml "data.root=$PHANTOM" "train.out_dir=$RUN" \
  "train.steps=$STEPS" "train.val_every=$VAL_EVERY" "train.ckpt_every=$VAL_EVERY" "${TRAIN_OVERRIDES[@]}"
cp "$RUN/metrics.jsonl" "$OUTDIR/train_metrics.jsonl" 2>/dev/null
cp "$RUN/train_log.jsonl" "$OUTDIR/train_log.jsonl" 2>/dev/null
cp "$RUN/splits.json" "$OUTDIR/train_splits.json" 2>/dev/null
cp "$RUN/MODEL_CARD.md" "$OUTDIR/MODEL_CARD.md" 2>/dev/null

TEST_IDS=$("$PY" -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['test']))" "$RUN/splits.json" \
  2>/dev/null)
part synthesize "$TO_SYNTH" "$PY" -m synthseq.cli synthesize --checkpoint "$RUN/best.pt" --input "$PHANTOM" \
  --subjects "$TEST_IDS" --output "$WORK/pred" --device "$DEVICE" --overwrite
part evaluate "$TO_EVAL" "$PY" -m synthseq.cli evaluate --pred "$WORK/pred" --target "$PHANTOM" --input "$PHANTOM" \
  --train-subjects "$RUN/splits.json" --out "$WORK/eval" --no-lpips
cp "$WORK/eval/summary.json" "$OUTDIR/eval_summary.json" 2>/dev/null
cp "$WORK/eval/metrics.csv" "$OUTDIR/eval_metrics.csv" 2>/dev/null

"$PY" benchmarks/gpu_check_summary.py "$OUTDIR" --smoke "$SMOKE" --seconds "$(( $(date +%s) - T_START ))"
rc=$?
[ -z "${GPU_CHECK_WORK:-}" ] && rm -rf "$WORK"
exit $rc
