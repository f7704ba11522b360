#!/usr/bin/env bash
# Every GPU figure in one go: the `gpu` tests, then each speed benchmark on CUDA, then one table.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: runs/gpu_check
#
# Needs the trained checkpoints runs/demo (latent 20) and runs/z2 (latent 2): `make bench` makes
# both. Each part runs under its own time limit and all of them under one deadline (BUDGET_S,
# default 480 s), so the whole check ends inside 10 minutes even when a part hangs; a part that
# fails or times out is marked in the table and the others still run. Logs and JSON go to
# OUT_DIR, and OUT_DIR/gpu_check.tar.gz holds them all (checkpoints and images left out).
#
# Environment: PYTHON (default python3), DEVICE (default cuda; DEVICE=cpu QUICK=1 checks the
# plumbing on a machine without a GPU in a few minutes), BUDGET_S, DEMO, Z2 (checkpoint folders).
set -u
OUT_DIR=${1:-runs/gpu_check}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
BUDGET_S=${BUDGET_S:-480}
DEMO=${DEMO:-runs/demo}
Z2=${Z2:-runs/z2}
export PYTHONUNBUFFERED=1
# JAX takes 75% of the GPU's memory at its first call unless told otherwise; torch needs some too.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# On a GPU, JAX multiplies float32 matrices in TF32 by default (the port's log joint then differs
# from ppl_vae's by ~2e-4 relative); torch does not. Full float32 for both, as on the CPU.
export JAX_DEFAULT_MATMUL_PRECISION=highest
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT_DIR"
: > "$OUT_DIR/parts.tsv"
DEADLINE=$(( $(date +%s) + BUDGET_S ))

# part NAME LIMIT_S COMMAND...: run COMMAND with its output in OUT_DIR/NAME.log, under
# min(LIMIT_S, time left before the deadline); record name, exit status and seconds.
part() {
    local name=$1 limit=$2 left rc started
    shift 2
    left=$(( DEADLINE - $(date +%s) ))
    (( left < limit )) && limit=$left
    if (( limit < 10 )); then
        printf '%s\tskipped\t0\n' "$name" >> "$OUT_DIR/parts.tsv"
        echo "== $name: skipped (the deadline is reached)"
        return
    fi
    echo "== $name (at most ${limit} s)"
    started=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - started ))" >> "$OUT_DIR/parts.tsv"
    tail -n 4 "$OUT_DIR/$name.log"
}

if [[ $QUICK == 1 ]]; then
    SVI_ARGS=(--repeats 1 --latent-dims 2 --batch-sizes 128)
    PEER_ARGS=(--quick)
    IWAE_ARGS=(--num-samples 200 --repeats 1)
    GENERIC_ARGS=(--quick)
    EPOCHS=2
else
    SVI_ARGS=(--repeats 3 --latent-dims 20 2 --batch-sizes 128 256)
    PEER_ARGS=(--repeats 3 --nuts-draws 300 600 --checkpoint "$DEMO" --checkpoint-z2 "$Z2")
    IWAE_ARGS=(--num-samples 5000 --repeats 3 --checkpoint "$DEMO")
    GENERIC_ARGS=(--repeats 3 --checkpoint "$DEMO" --nuts-checkpoint "$Z2")
    EPOCHS=200
fi
CLI=("$PY" "$HERE/../ppl_vae_console.py")

part environment 60 "$PY" -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
# shellcheck disable=SC2046  # the test files are plain names
part gpu_tests 150 "$PY" -m pytest -q -p no:cacheprovider -m gpu $(grep -l "mark.gpu" "$HERE"/../tests/test_*.py)
part svi_throughput 120 "$PY" "$HERE/svi_throughput.py" --device "$DEVICE" "${SVI_ARGS[@]}" \
    --out "$OUT_DIR/svi_throughput.json"
part demo_train 120 "${CLI[@]}" train --device "$DEVICE" --epochs "$EPOCHS" --quiet --overwrite \
    --out "$OUT_DIR/demo"
part demo_evaluate 60 "${CLI[@]}" evaluate --device "$DEVICE" --checkpoint "$OUT_DIR/demo" --json
part peers 240 "$PY" "$HERE/peers_vs_ppl_vae.py" --device "$DEVICE" "${PEER_ARGS[@]}" \
    --out "$OUT_DIR/peers.json"
part iwae_evaluation 60 "$PY" "$HERE/iwae_evaluation.py" --device "$DEVICE" "${IWAE_ARGS[@]}" \
    --out "$OUT_DIR/iwae_evaluation.json"
part generic_vs_direct 90 "$PY" "$HERE/generic_vs_direct.py" --device "$DEVICE" "${GENERIC_ARGS[@]}" \
    --out "$OUT_DIR/generic_vs_direct.json"
part demo_train_eager 120 "${CLI[@]}" train --device "$DEVICE" --epochs "$EPOCHS" --quiet --overwrite \
    --no-cuda-graph --out "$OUT_DIR/demo_eager"

"$PY" "$HERE/gpu_summary.py" "$OUT_DIR" | tee "$OUT_DIR/summary.txt"
tar -czf "$OUT_DIR.tar.gz" -C "$OUT_DIR" --exclude '*.pt' --exclude '*.png' . && mv "$OUT_DIR.tar.gz" "$OUT_DIR/gpu_check.tar.gz"
