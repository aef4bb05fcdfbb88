#!/usr/bin/env bash
# The paper's Table 2 grid and its follow-ups, in priority order. Every sweep is resumable:
# run this script again (in a later session) and it continues where it stopped; a sweep
# that has finished runs nothing. Run directories live outside the checkout ($RUNS).
# Usage: bash docs/results/run_table2.sh [RUNS_DIR]    (Ctrl-C stops cleanly; exit 130)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-/work/runs}
PY=${PY:-.venv/bin/python}
mkdir -p "$RUNS"
common=(--task adding --hidden 100 --batch 16 --eval-every 1000 --log-every 100
        --checkpoint-every 2000 --scheduler local --jobs 2 --threads 1 --quiet)

sweep() {  # sweep DIR ARGS...: start it, or resume it when DIR exists
  local dir=$1; shift
  if [ -f "$dir/sweep.json" ]; then
    "$PY" -m pathgeom sweep --out "$dir" --resume --scheduler local --jobs 2 --quiet
  else
    "$PY" -m pathgeom sweep "${common[@]}" "$@" --out "$dir"
  fi
}

# 1. T = 100, the full grid: RNN-Path (Path-SGD, kappa1, default rule), path-Adam, and
#    IRNN (SGD from W_rec = I, 10 initialisations per rate, chosen on the validation set)
sweep "$RUNS/table2-T100" --T 100 --steps 100000 --lrs 0.01,0.001,0.0001 \
      --optimizers path-sgd,path-adam,sgd --irnn-inits 10
# 2. np-RNN (SGD from the normalised positive-definite W_rec), the paper's comparison row
sweep "$RUNS/table2-T100-np" --T 100 --steps 100000 --lrs 0.01,0.001,0.0001 \
      --optimizers sgd --init np-rnn --irnn-inits 10
# 3. then, by the results of 1-2 (one sweep each, same options): T = 400 with the best rate
#    of each method (--T 400 --lrs BEST --optimizers ...), T = 750 likewise, and sequential
#    digits: --task digits --data builtin28 (784 steps per sequence) for path-sgd and sgd.
