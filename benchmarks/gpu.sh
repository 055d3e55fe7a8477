#!/usr/bin/env bash
# Every GPU benchmark in one command, for one NVIDIA GPU (H100/H200; budget: 8 minutes):
#   pip install ".[cuda]" && benchmarks/gpu.sh
# 1. throughput: env-only, rollout and REINFORCE training env-steps/s up to 4096 envs, vmapped
#    seeds, and the grid of num_envs x vmapped seeds up to 4096 x 64 (benchmarks.throughput --grid);
# 2. PPO against rejax at rejax's settings (rejax's side when its venv exists, see ../shared/peers);
# 3. determinism: two processes compiling afresh, bit for bit, with --xla_gpu_deterministic_ops=true.
# Writes benchmarks/results/{throughput,ppo-vs-rejax,determinism}-gpu.{json,md}.
#
#   benchmarks/gpu.sh --tiny    # the same steps at the smallest sizes: seconds, on a CPU too
#                               # (results into $RLPG_RESULTS, default a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"

if [[ "${1:-}" == "--tiny" ]]; then
    RESULTS="${RLPG_RESULTS:-$(mktemp -d)}"
    THROUGHPUT=(--tiny --grid)
    PPO=(--total-timesteps 4096 --rounds 1 --eval-episodes 2 --no-rejax)
    DETERMINISM=(--tiny)
    SUFFIX="-tiny"
elif [[ $# -eq 0 ]]; then
    RESULTS="${RLPG_RESULTS:-benchmarks/results}"
    THROUGHPUT=(--grid)
    PPO=(--seeds 1 --rounds 2)
    DETERMINISM=()
    SUFFIX="-gpu"
    if [[ "$($PYTHON -c 'import jax; print(jax.devices()[0].platform)')" != "gpu" ]]; then
        echo "benchmarks/gpu.sh: jax sees no GPU (pip install \".[cuda]\"); use --tiny for a CPU check." >&2
        exit 2
    fi
else
    echo "usage: benchmarks/gpu.sh [--tiny]" >&2
    exit 2
fi
mkdir -p "$RESULTS"
echo "== throughput"
$PYTHON -m benchmarks.throughput "${THROUGHPUT[@]}" --results "$RESULTS"
echo "== PPO vs rejax"
$PYTHON -m benchmarks.ppo_vs_rejax "${PPO[@]}" --results "$RESULTS" --suffix="$SUFFIX"
echo "== determinism (XLA_FLAGS=--xla_gpu_deterministic_ops=true)"
XLA_FLAGS="--xla_gpu_deterministic_ops=true ${XLA_FLAGS:-}" $PYTHON -m benchmarks.determinism "${DETERMINISM[@]}" --results "$RESULTS"
echo "wrote $RESULTS"
