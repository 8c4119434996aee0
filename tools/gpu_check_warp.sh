#!/usr/bin/env bash
# The MuJoCo Warp checks that need a GPU (issue 15), as one short script: parity with CPU MuJoCo on cuda:0, env
# steps/s of the sim and of the evaluation loop (base + residual) at 1k-8k worlds, and one short cube_lift training
# run's time to 95 % validation success. Everything it prints also goes to OUT (default ./gpu_check_out).
#
#   bash tools/gpu_check_warp.sh [OUT]        # about 8 minutes on one GPU once .venv exists (kernels compile cold)
#   DEVICE=cpu ENVS=4 TRAIN_ENVS=4 TRAIN_S=60 bash tools/gpu_check_warp.sh /tmp/smoke   # the same steps, small, on CPU
#
# Needs the project's .venv with the extra (`make setup && make setup-warp`: PyPI access) and an NVIDIA driver.
# NOT RUN YET: no GPU was lent to this issue. On a lent device machine (no network there) the venv cannot be
# built: it needs the wheels carried in, and warp-lang's alone (~149 MB) is larger than one carry (64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
DEVICE=${DEVICE:-cuda:0}
ENVS=${ENVS:-"1024 4096 8192"}
TRAIN_ENVS=${TRAIN_ENVS:-1024}
TRAIN_S=${TRAIN_S:-200}
mkdir -p "$OUT"
PY=.venv/bin/python
export WARP_CACHE_PATH="$OUT/warp_cache"
log() { echo "[gpu-check $(date +%T)] $*" | tee -a "$OUT/summary.txt"; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi"; } | tee "$OUT/gpu.txt"
"$PY" -c "import warp as wp; wp.init(); print('warp', wp.__version__, 'cuda devices', wp.get_cuda_devices())" \
    | tee -a "$OUT/gpu.txt"

log "1. parity with CPU MuJoCo on $DEVICE (scripted experts, seeds 0-9, all five tasks)"
timeout 240 "$PY" tools/backend_parity.py --device "$DEVICE" --seeds 0 1 2 3 4 5 6 7 8 9 \
    --json-out "$OUT/parity.json" | tee "$OUT/parity.txt" || log "parity: exit $?"

log "2. sim env steps/s, pick_place, MLP in the loop"
timeout 240 "$PY" benchmarks/bench_sim.py --backend warp --device "$DEVICE" --task pick_place \
    --num-envs $ENVS --steps 50 --single-steps 50 --expert-episodes 1 \
    | tee "$OUT/bench_sim.txt" || log "bench_sim: exit $?"

log "3. evaluation loop with the shipped base and a residual, cube_lift"
timeout 240 "$PY" benchmarks/bench_policy_loop.py --backend warp --device "$DEVICE" --task cube_lift \
    --num-envs $ENVS --episodes-per-env 1 --repeats 1000 \
    | tee "$OUT/bench_policy_loop.txt" || log "bench_policy_loop: exit $?"

log "4. cube_lift residual-train on $DEVICE ($TRAIN_ENVS envs) until the time limit; eval.csv gives the time to 95 %"
timeout "$TRAIN_S" .venv/bin/residual-train --task cube_lift --backend warp --device "$DEVICE" --num-envs "$TRAIN_ENVS" \
    --total-steps 2000000 --eval-every $((TRAIN_ENVS * 50)) --eval-episodes 20 --out-dir "$OUT/train_cube_lift" \
    > "$OUT/train_cube_lift.log" 2>&1 || log "residual-train stopped (exit $?; 124 = the time limit)"
"$PY" - "$OUT/train_cube_lift/eval.csv" <<'EOF' | tee -a "$OUT/summary.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
hit = next((r for r in rows if int(r["successes"]) >= 0.95 * int(r["episodes"])), None)
print("time to 95 %:", f"{float(hit['wall_s']):.0f} s at {hit['env_steps']} env steps" if hit else "not reached",
      f"({len(rows)} evaluations)")
EOF
log "done: $OUT"
