"""The committed evidence behind docs/results.md: every row of the results tables is backed,
exactly, by the run files it names (docs/results/runs/...), and the evidence stays small."""
import csv
import json
import os

import numpy as np
import pytest

from pathgeom import experiments, runs

from helpers import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
#: table file -> its metric column (the issue's formats)
TABLES = {"table2.csv": "test_mse", "side-studies.csv": "test_mse", "digits.csv": "test_error"}
METHODS = {"path-sgd", "irnn", "path-adam", "np-rnn"}


def _rows():
    out = []
    for name, column in TABLES.items():
        path = os.path.join(RESULTS, name)
        if os.path.exists(path):
            with open(path, newline="") as f:
                out += [(name, column, row) for row in csv.DictReader(f)]
    return out


ROWS = _rows()


def test_table2_exists_with_the_columns_of_the_issue():
    with open(os.path.join(RESULTS, "table2.csv"), newline="") as f:
        header = next(csv.reader(f))
    assert header == ["T", "method", "lr", "steps", "test_mse", "run"]
    assert any(table == "table2.csv" for table, _, _ in ROWS)


@pytest.mark.parametrize("table, column, row", ROWS,
                         ids=[f"{t}:{r['run'].split('/')[-1]}:T{r['T']}" for t, _, r in ROWS])
def test_each_row_is_backed_by_its_run_files(table, column, row):
    d = os.path.join(ROOT, row["run"])
    with open(os.path.join(d, "result.json")) as f:
        result = json.load(f)
    assert result["status"] == "finished" and not result["diverged"]
    assert int(row["steps"]) == result["steps"] == result["config"]["steps"]
    if column == "test_mse":
        # exactly the run's test loss, written at full precision
        assert float(row["test_mse"]) == result["test_loss"]
        assert row["method"] in METHODS
    else:
        assert float(row["test_error"]) == 1.0 - result["test_metric"]
    config = experiments.read_run_config(d)
    assert experiments.method_name(config) == row["method"]
    assert float(row["lr"]) == config["lr"]
    net, p = runs.load_params(os.path.join(d, "params.npz"))[:2]
    assert net.T == int(row["T"]) and len(net.hidden) == 1      # one-layer networks
    assert p.shape == (net.n_params,) and np.isfinite(p).all()
    # p laid out W_in, W_rec, W_out (then the biases, when there are any)
    starts = [net.layout.slice("W_in", 0).start, net.layout.slice("W_rec", 0).start,
              net.layout.slice("W_out").start]
    assert starts == sorted(starts) and starts[0] == 0
    with open(os.path.join(d, "history.csv"), newline="") as f:
        history = list(csv.DictReader(f))
    assert int(history[-1]["step"]) == result["steps"]
    evaluated = [h for h in history if h["test_loss"]]
    assert float(evaluated[-1]["test_loss"]) == result["test_loss"]


def test_the_committed_evidence_stays_under_20_mb():
    total = sum(os.path.getsize(os.path.join(dirpath, name))
                for dirpath, _, names in os.walk(RESULTS) for name in names)
    assert total < 20 * 2 ** 20


def test_weights_moved_rebuilds_the_initialisation_of_a_committed_run(capsys):
    """docs/results/weights_moved.py rebuilds p0 from the run's seed: the IRNN start has
    W_rec = I exactly (norm sqrt(H)), and the printed change is |p - p0| per block."""
    import runpy
    row = next(r for t, _, r in ROWS if t == "table2.csv" and r["method"] != "np-rnn")
    d = os.path.join(ROOT, row["run"])
    module = runpy.run_path(os.path.join(RESULTS, "weights_moved.py"))
    module["main"]([d])
    lines = capsys.readouterr().out.strip().splitlines()[2:]
    cells = {line.split("|")[2].strip(): line.split("|")[3:5] for line in lines}
    net, p = runs.load_params(os.path.join(d, "params.npz"))[:2]
    assert float(cells["W_rec"][0]) == pytest.approx(np.sqrt(net.hidden[0]), rel=1e-3)
    s = net.layout.slice("W_out")
    config = experiments.read_run_config(d)
    p0 = net.init(np.random.default_rng(config["seed"]), config["init"])
    assert float(cells["W_out"][1]) == pytest.approx(np.linalg.norm(p[s] - p0[s]), rel=1e-2)


def _partial_runs():
    base = os.path.join(RESULTS, "runs", "partial")
    return sorted(os.path.relpath(dirpath, base) for dirpath, _, names in os.walk(base)
                  if "result.json" in names)


@pytest.mark.parametrize("name", _partial_runs())
def test_each_cut_short_run_says_how_it_ended(name):
    """The runs the text reports as diverged or cut short: their own files say so, and the
    history stops where the result says the run stopped."""
    import re
    d = os.path.join(RESULTS, "runs", "partial", name)
    with open(os.path.join(d, "result.json")) as f:
        result = json.load(f)
    config = experiments.read_run_config(d)
    assert result["status"] in ("diverged", "interrupted")
    assert result["diverged"] == (result["status"] == "diverged")
    assert result["steps"] < config["steps"]
    with open(os.path.join(d, "history.csv"), newline="") as f:
        steps = [int(h["step"]) for h in csv.DictReader(f)]
    assert steps[0] == 0 and steps == sorted(steps)
    if result["status"] == "diverged":
        stopped = int(re.match(r"diverged at step (\d+)", result["message"]).group(1))
        assert result["steps"] < stopped and steps[-1] <= stopped
    else:
        assert steps[-1] == result["steps"]


def test_worst_sequences_rebuilds_the_test_set_of_a_committed_run(capsys):
    """docs/results/worst_sequences.py: its mean is the run's own test MSE (so it scores the
    run's test set), and the median and maximum are those of the per-sequence errors."""
    import runpy
    d = os.path.join(RESULTS, "runs", "partial", "table2-T100", "path-adam-lr0.001-seed0")
    module = runpy.run_path(os.path.join(RESULTS, "worst_sequences.py"))
    module["main"]([d])
    cells = capsys.readouterr().out.strip().splitlines()[2].split("|")
    with open(os.path.join(d, "result.json")) as f:
        result = json.load(f)
    assert_close(float(cells[2]), result["test_loss"], rtol=1e-3)
    # the mean of 1,000 errors: the largest alone accounts for it (one blown-up sequence)
    assert_close(float(cells[5]) / 1000, result["test_loss"], rtol=1e-2)
    assert float(cells[3]) < 1 and cells[4].strip().endswith("of 1000")


def test_cost_adds_up_the_run_time_of_every_sweep(tmp_path, capsys):
    """docs/results/cost.py: one line per sweep directory (other directories skipped), the
    hours of all its runs, and their total."""
    import runpy
    configs = [experiments.make_config(T=6, hidden=[4], batch=8, steps=10, optimizer="sgd",
                                       lr=lr, eval_every=5) for lr in (0.01, 0.02)]
    experiments.sweep(configs, tmp_path / "a", jobs=1, progress=False)
    experiments.sweep(configs[:1], tmp_path / "b", jobs=1, progress=False)
    (tmp_path / "not-a-sweep").mkdir()
    # known run times, so that the sums are checkable
    for sweep_dir, config, seconds in [("a", configs[0], 3600.0), ("a", configs[1], 1800.0),
                                       ("b", configs[0], 720.0)]:
        path = tmp_path / sweep_dir / experiments.run_dir_name(config) / "result.json"
        result = json.loads(path.read_text())
        runs.atomic_write_json(path, dict(result, seconds=seconds))
    # a copy continued from a run of "b" counts only its own time, not the source's 720 s
    src = tmp_path / "b" / experiments.run_dir_name(configs[0])
    runs.save_checkpoint(src, dict(runs.load_checkpoint(src), seconds=720.0))
    experiments.sweep(experiments.branch_runs([src], tmp_path / "c", 20), tmp_path / "c",
                      jobs=1, resume=True, progress=False)
    path = tmp_path / "c" / experiments.run_dir_name(configs[0]) / "result.json"
    result = json.loads(path.read_text())
    assert result["seconds"] > 720.0     # it counts on from its source's time
    runs.atomic_write_json(path, dict(result, seconds=720.0 + 1080.0))
    module = runpy.run_path(os.path.join(RESULTS, "cost.py"))
    module["main"](str(tmp_path))
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert lines == [["a", "1.50", "h", "2", "runs"], ["b", "0.20", "h", "1", "runs"],
                     ["c", "0.30", "h", "1", "runs"], ["total", "2.00", "h"]]
