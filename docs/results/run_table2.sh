#!/usr/bin/env bash
# The paper's Table 2 grid and its follow-ups, in priority order. Every sweep is resumable:
# run this script again (in a later session) and it continues where it stopped; a sweep
# that has finished runs nothing. Run directories go to $RUNS (the first argument; default
# runs/ in the checkout, which git ignores).
#
# Usage: bash docs/results/run_table2.sh [RUNS_DIR [STAGE ...]]   (Ctrl-C stops cleanly)
#   STAGE: t100 t100-np t400-adam t400-sgd t400-irnn t750-sgd t750-adam t750-irnn digits
#   (the default: all of these, in that order); t400-irnn-rest and t750-irnn-rest (IRNN
#   at the other rates); t400-np t750-np (np-RNN); side studies
#   t100-rules t100-clip t400-clip t400-clip-rest; longer runs t100-long t100-clip-long
#   (copies of finished runs continued to 300,000 steps); t100-sgd-longer (the Path-SGD
#   run of t100-long, still falling at 300,000 steps, continued to 600,000); digits-long
#   (the digits runs continued to 60,000 steps).
#   JOBS=1 bash ... runs one worker, so that two stages can share a 2-core machine, e.g.
#   JOBS=1 bash docs/results/run_table2.sh runs t100 t100-np &
#   JOBS=1 bash docs/results/run_table2.sh runs t400-adam &
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-runs}
shift || true
STAGES=${*:-t100 t100-np t400-adam t400-sgd t400-irnn t750-sgd t750-adam t750-irnn digits}
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
mkdir -p "$RUNS"
common=(--hidden 100 --batch 16 --eval-every 1000 --log-every 100
        --checkpoint-every 2000 --scheduler local --jobs "$JOBS" --threads 1 --quiet)

sweep() {  # sweep DIR ARGS...: start it, or resume it when DIR exists
  local dir=$1; shift
  if [ -f "$dir/sweep.json" ]; then
    "$PY" -m pathgeom sweep --out "$dir" --resume --scheduler local --jobs "$JOBS" --quiet
  else
    "$PY" -m pathgeom sweep "${common[@]}" "$@" --out "$dir"
  fi
}

branch() {  # branch DIR STEPS RUN...: continue copies of runs in a new sweep DIR, or resume it
  local dir=$1 steps=$2; shift 2
  if [ -f "$dir/sweep.json" ]; then
    "$PY" -m pathgeom sweep --out "$dir" --resume --scheduler local --jobs "$JOBS" --quiet
  else
    "$PY" -m pathgeom sweep --from "$@" --steps "$steps" --out "$dir" --scheduler local \
        --jobs "$JOBS" --quiet
  fi
}

for stage in $STAGES; do
  case $stage in
  # T = 100, the full grid: RNN-Path (Path-SGD, kappa1, default rule), path-Adam, and
  # IRNN (SGD from W_rec = I, 10 initialisations per rate, chosen on the validation set)
  t100) sweep "$RUNS/table2-T100" --task adding --T 100 --steps 100000 \
          --lrs 0.01,0.001,0.0001 --optimizers path-sgd,path-adam,sgd --irnn-inits 10 ;;
  # np-RNN (SGD from the normalised positive-definite W_rec), the paper's comparison row
  t100-np) sweep "$RUNS/table2-T100-np" --task adding --T 100 --steps 100000 \
          --lrs 0.01,0.001,0.0001 --optimizers sgd --init np-rnn --irnn-inits 10 ;;
  # T = 400, the best rate of each method at T = 100 (path-Adam 1e-4 solved T = 100;
  # Path-SGD 1e-2 and IRNN 1e-4 ended lowest on the plateau)
  t400-adam) sweep "$RUNS/table2-T400-adam" --task adding --T 400 --steps 100000 \
          --lrs 0.0001 --optimizers path-adam ;;
  t400-sgd) sweep "$RUNS/table2-T400-sgd" --task adding --T 400 --steps 100000 \
          --lrs 0.01 --optimizers path-sgd ;;
  t400-irnn) sweep "$RUNS/table2-T400-irnn" --task adding --T 400 --steps 100000 \
          --lrs 0.0001 --optimizers sgd --irnn-inits 10 ;;
  # ... and the other two rates, once every initialisation at 1e-4 had exploded
  t400-irnn-rest) sweep "$RUNS/table2-T400-irnn-rest" --task adding --T 400 --steps 100000 \
          --lrs 0.01,0.001 --optimizers sgd --irnn-inits 10 ;;
  # np-RNN at T = 400, one initialisation at each of the two rates that ended lowest at
  # T = 100 (1e-3 and 1e-4, within 0.001 of each other; a T = 400 run costs about 0.8
  # CPU-hours), and at T = 750 one initialisation at the better of the two at T = 400
  t400-np) sweep "$RUNS/table2-T400-np" --task adding --T 400 --steps 100000 \
          --lrs 0.001,0.0001 --optimizers sgd --init np-rnn ;;
  t750-np) sweep "$RUNS/table2-T750-np" --task adding --T 750 --steps 100000 \
          --lrs 0.0001 --optimizers sgd --init np-rnn ;;
  # T = 750, the best configuration of each method at T = 400 as far as the budget allows
  # (a run costs about 2.5 CPU-hours: one initialisation for IRNN)
  t750-sgd) sweep "$RUNS/table2-T750-sgd" --task adding --T 750 --steps 100000 \
          --lrs 0.01 --optimizers path-sgd ;;
  t750-adam) sweep "$RUNS/table2-T750-adam" --task adding --T 750 --steps 100000 \
          --lrs 0.0001 --optimizers path-adam ;;
  t750-irnn) sweep "$RUNS/table2-T750-irnn" --task adding --T 750 --steps 100000 \
          --lrs 0.0001 --optimizers sgd ;;
  t750-irnn-rest) sweep "$RUNS/table2-T750-irnn-rest" --task adding --T 750 --steps 100000 \
          --lrs 0.01,0.001 --optimizers sgd ;;
  # side studies at T = 100 (not rows of table2.csv): Path-SGD with the calibrated rule (no
  # backtracking), and IRNN with the gradient norm clipped at 1 (one initialisation per rate)
  t100-rules) sweep "$RUNS/table2-T100-calibrated" --task adding --T 100 --steps 100000 \
          --lrs 0.01,0.001,0.0001 --optimizers path-sgd --rule calibrated ;;
  t100-clip) sweep "$RUNS/table2-T100-clip" --task adding --T 100 --steps 100000 \
          --lrs 0.01,0.001,0.0001 --optimizers sgd --clip 1 ;;
  # ... and clipped IRNN at T = 400, at the rate that solved T = 100 with clipping
  t400-clip) sweep "$RUNS/table2-T400-clip" --task adding --T 400 --steps 100000 \
          --lrs 0.01 --optimizers sgd --clip 1 ;;
  t400-clip-rest) sweep "$RUNS/table2-T400-clip-rest" --task adding --T 400 --steps 100000 \
          --lrs 0.001,0.0001 --optimizers sgd --clip 1 ;;
  # longer runs where the T = 100 curves may still fall: the selected RNN-Path and IRNN runs
  # to 300,000 steps, and the clipped IRNN at 1e-3, which was still falling at 100,000
  t100-long) branch "$RUNS/table2-T100-long" 300000 "$RUNS/table2-T100/path-sgd-lr0.01-seed0" \
          "$RUNS/table2-T100/sgd-lr0.0001-seed1" ;;
  t100-clip-long) branch "$RUNS/table2-T100-clip-long" 300000 \
          "$RUNS/table2-T100-clip/sgd-lr0.001-seed0" ;;
  # ... and the Path-SGD one, still falling at 300,000 steps, continued to 600,000
  t100-sgd-longer) branch "$RUNS/table2-T100-longer" 600000 \
          "$RUNS/table2-T100-long/path-sgd-lr0.01-seed0" ;;
  # long sequential digits (the built-in digits upsampled to 28 x 28, 784 steps per sequence)
  digits) sweep "$RUNS/digits" --task digits --data builtin28 --steps 20000 \
          --lrs 0.0001 --optimizers path-adam,path-sgd,sgd ;;
  # ... and the two finished digits runs continued to 60,000 steps (both were still falling)
  digits-long) branch "$RUNS/digits-long" 60000 "$RUNS/digits/path-sgd-lr0.0001-seed0" \
          "$RUNS/digits/path-adam-lr0.0001-seed0" ;;
  *) echo "unknown stage: $stage" >&2; exit 2 ;;
  esac
done
