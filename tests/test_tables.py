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
