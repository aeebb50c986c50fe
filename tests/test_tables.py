"""Result tables (mtpd/tables.py): rebuilt from a copy of results/ alone, equal to the tiny run's
(the session's tiny_run fixture: the whole tiny DAG, so slow; the tables' contents are checked
by tests/e2e/test_workflow.py)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.helpers import user_env


@pytest.mark.slow
def test_tables_rebuild_from_results_alone(tiny_run, tmp_path):
    """`mtpd tables` needs neither Snakemake nor the config: a copy of results/ suffices."""
    copy = tmp_path / "results"
    shutil.copytree(tiny_run / "results", copy)
    shutil.rmtree(copy / "tiny/tables")
    shutil.rmtree(copy / "tiny/plots")
    r = subprocess.run([sys.executable, "-m", "mtpd", "tables", str(copy)], cwd=tmp_path,
                       capture_output=True, text=True, env=user_env())
    assert r.returncode == 0, r.stderr
    for f in ("main.csv", "runs.csv", "bgs_log.csv", "bgs_cost.csv", "bgs_exhaustive.csv"):
        assert (copy / "tiny/tables" / f).read_text() == \
            (tiny_run / "results/tiny/tables" / f).read_text(), f
    summary = pd.read_csv(copy / "summary.csv")
    assert set(summary["experiment"]) == {"tiny"}


def test_the_main_table_says_which_recipe_won():
    """The best student is marked, and MTPD's row carries its paired difference to the best
    direct run at its own epochs (best by mean over seeds, differences taken per seed)."""
    from mtpd.tables import METHODS, STATS, main_table, verdict

    rows = []
    for seed, shift in ((0, 0.0), (1, 1.0), (2, 2.0)):
        rows += [
            {"model": "t", "method": METHODS["teacher"], "teachers": "", "seed": None,
             "epochs": 18, "AP": 30.0},
            {"model": "s", "method": METHODS["direct"], "teachers": "a", "seed": seed,
             "epochs": 4, "AP": 10.0 + shift},
            {"model": "s", "method": METHODS["direct"], "teachers": "b", "seed": seed,
             "epochs": 4, "AP": 9.0 + shift},
            {"model": "s", "method": METHODS["progressive"], "teachers": "b -> a", "seed": seed,
             "epochs": 4, "AP": 10.5 + shift + 0.1 * seed},
            {"model": "s", "method": METHODS["mtpd"], "teachers": "b -> a", "seed": seed,
             "epochs": 4, "AP": 10.5 + shift + 0.1 * seed}]
    table = pd.DataFrame(rows)
    for column in STATS[1:] + ["train_minutes"]:
        table[column] = float("nan")
    main, line = verdict(main_table(table), table)
    assert main.loc[main["best"] == "best", "method"].tolist() == [METHODS["progressive"]]
    mtpd = main[main["method"] == METHODS["mtpd"]].iloc[0]
    assert mtpd["vs_best_direct"] == "+0.60 +- 0.10 (a, 3 seeds)"  # 0.5, 0.6, 0.7 against a
    assert line.startswith("Best student: progressive b -> a at 4 epochs, AP 11.60.")
    assert "MTPD minus the best direct run at 4 epochs, paired by seed: +0.60 +- 0.10" in line
