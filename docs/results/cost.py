"""Run time of every sweep under a runs directory, and the total (CPU-hours: one core a run).

Usage: python docs/results/cost.py RUNS_DIR

Reads each sweep's run files through ``experiments.sweep_status`` (finished, diverged,
interrupted and running runs alike), so it also counts the runs of a sweep under way. A
copy of a run made with ``pathgeom sweep --from`` counts only the time it spent itself
(``experiments.own_seconds``): the time of its source is counted with the source.
"""
import os
import sys

from pathgeom import experiments


def main(runs_dir):
    total = 0.0
    for name in sorted(os.listdir(runs_dir)):
        sweep_dir = os.path.join(runs_dir, name)
        if not os.path.isfile(os.path.join(sweep_dir, "sweep.json")):
            continue
        rows = experiments.sweep_status(sweep_dir)
        hours = sum(experiments.own_seconds(os.path.join(sweep_dir, r["run"]), r["seconds"])
                    for r in rows) / 3600
        total += hours
        print(f"{name:28s} {hours:6.2f} h  {len(rows):3d} runs")
    print(f"{'total':28s} {total:6.2f} h")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2])
    main(sys.argv[1])
