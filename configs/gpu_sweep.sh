#!/usr/bin/env bash
# The GPU sweep behind results/gpu/ (issues #5, #6): one prepared script for a lent H100/H200.
# Needs .gpu/payload.tgz (data subset + parse/tokenizer/packed cache; see configs/README.md) and
# writes $OUT/gpu_runs.tgz (configs, metrics logs and worker logs of every run; no checkpoints).
# Usage: DEADLINE=440 WORKERS=15 bash configs/gpu_sweep.sh   (STOP_GRACE=60: seconds stopped runs get to save state; SMOKE=0 skips the smoke run)
#        PLAN=configs/gpu_4layer.json RUNS=runs/gpu4 DEADLINE=500 bash configs/gpu_sweep.sh
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
P=/tmp/payload; mkdir -p $P && tar xzf .gpu/payload.tgz -C $P || exit 1
export SASUTILS_DATA=$P/data SASUTILS_CACHE=$P/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
t0=$(date +%s)
if [ "${SMOKE:-1}" != 0 ]; then  # SMOKE=0 skips the 20-step check (~35 s) when this code already passed it on this kind of card
  python3 -m sasutils.sweep configs/gpu_smoke.json --runs-root /tmp/smoke --workers 2 --device cuda
  cat /tmp/smoke/sweep_status.csv
  if grep -qv ",done," <(tail -n +2 /tmp/smoke/sweep_status.csv); then
    tail -30 /tmp/smoke/*.log; exit 1
  fi
  echo "smoke ok after $(( $(date +%s) - t0 ))s"
fi
(while true; do nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader; sleep 30; done) > "$OUT/gpu_util.csv" &
python3 -m sasutils.sweep "${PLAN:-configs/gpu_sweep.json}" --runs-root "${RUNS:-runs/gpu}" --workers "${WORKERS:-15}" \
  --deadline "${DEADLINE:-440}" --stop-grace "${STOP_GRACE:-60}" --device cuda
kill %1 2>/dev/null
tar czf "$OUT/gpu_runs.tgz" --exclude='checkpoints' --exclude='state.pt' --exclude='tokenizer' "${RUNS:-runs/gpu}"
ls -la "$OUT"; echo "total $(( $(date +%s) - t0 ))s"
