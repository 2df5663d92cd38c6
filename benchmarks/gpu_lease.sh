#!/usr/bin/env bash
# One lent GPU, used once: every measurement the project wants from a GPU, in order, each under its own time
# limit, so that the lease ends with files even when a step overruns. Writes into OUT (default results/gpu):
#   gpu_window.{json,md}          flow checks on the device, ICA (materialised and fused) against fused attention,
#                                 MANGO's step against TokenFusion's at the gpu and paper presets (FLOPs, peak
#                                 memory, and at paper MANGO with its flow checkpointed), the process group
#   bench_fused_ica_gpu.json      one ICA training step: fused / materialised / fused causal SDPA, memory
#   bench_train_step_gpu.json     MANGO's training step against concat's at the gpu preset
#   profile_train_step_gpu.json   where that step goes: phases, modules, operators, kernels per step and per layer
#   replication.tgz               the pre-registered replication of the attention control on segmentation
#                                 (results/mechanisms/segmentation-nyudv2-replication/PROTOCOL.md), checkpoints left out
#   lease.log                     what each step printed
# On the device (torch preinstalled, no internet):  pip install --no-deps -e . && bash benchmarks/gpu_lease.sh "$OUT"
# Rehearsal on a CPU at tiny sizes:                 REHEARSAL=1 bash benchmarks/gpu_lease.sh runs/gpu-rehearsal
set -u
OUT="${1:-results/gpu}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
PY="${PYTHON:-python}"
START=$(date +%s)
TOTAL_SECONDS="${TOTAL_SECONDS:-540}"  # the whole lease script, within the device's 10 minutes per command
STUDY_SECONDS="${STUDY_SECONDS:-330}"  # at most this for the replication, less if the steps before it ran long
WORK="${WORK:-$(mktemp -d)}"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/lease.log"; }
run() {  # run LIMIT_SECONDS CMD...: one step, its output appended to lease.log, its exit status logged
    local limit=$1; shift
    log "step: $*"
    timeout "$limit" "$@" >> "$OUT/lease.log" 2>&1
    log "exit $? after at most ${limit}s"
}
if [ -n "${REHEARSAL:-}" ]; then
    DEV=cpu; WINDOW="--dry-run"; FUSED="--quick --pairs 2"; STEP="--preset quick --rounds 2 --warmup 1"
    PROFILE="--preset quick --steps 2"
    STUDY_PRESET=quick; SEEDS="${SEEDS:-3 4}"
else
    DEV=cuda; WINDOW=""; FUSED=""; STEP="--preset gpu --rounds 9"; PROFILE="--preset gpu --steps 3"
    STUDY_PRESET=cpu; SEEDS="${SEEDS:-3 4 5 6 7 8 9 10}"
fi
log "lease: $($PY -c 'import torch; from mango_lite.utils import device_name; print(device_name(torch.device("'$DEV'")), "torch", torch.__version__)')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$OUT/lease.log"
run 150 $PY -m mango_lite gpu-window --out "$OUT" --no-reproduction $WINDOW --minutes 4
run 80 $PY benchmarks/bench_fused_ica.py --device $DEV $FUSED --out "$OUT/bench_fused_ica_gpu.json"
run 80 $PY benchmarks/bench_train_step.py --device $DEV $STEP --out "$OUT/bench_train_step_gpu.json"
run 60 $PY benchmarks/profile_train_step.py --device $DEV $PROFILE --out "$OUT/profile_train_step_gpu.json"
# the replication: one process per seed (mango, then mango-noattn), the data generated once beforehand
run 60 $PY -c "from mango_lite.training.tasks import build_task_data; build_task_data('segmentation', '$STUDY_PRESET', dataset='nyudv2', cache_dir='$WORK/data')"
LEFT=$(( START + TOTAL_SECONDS - $(date +%s) - 40 ))  # 40 s to merge and pack
[ "$LEFT" -lt "$STUDY_SECONDS" ] && STUDY_SECONDS=$LEFT
log "replication: seeds $SEEDS at preset $STUDY_PRESET, at most ${STUDY_SECONDS}s"
for s in $SEEDS; do
    OMP_NUM_THREADS=2 timeout "$STUDY_SECONDS" $PY -m mango_lite mechanisms --task segmentation --dataset nyudv2 \
        --study controls --models mango mango-noattn --seeds "$s" --preset $STUDY_PRESET \
        --data-cache "$WORK/data" --out "$WORK/seed$s" > "$WORK/seed$s.log" 2>&1 &
done
wait
log "replication: finished or stopped"
run 30 $PY -m mango_lite mechanisms --task segmentation --merge $(for s in $SEEDS; do [ -f "$WORK/seed$s/mechanisms.json" ] && echo "$WORK/seed$s"; done) \
    --out "$WORK/merged" --title "MANGO against its attention control: replication on new seeds"
tar czf "$OUT/replication.tgz" --exclude='*.pt' --exclude='data' -C "$WORK" .
log "done: $(ls "$OUT" | tr '\n' ' ')"
