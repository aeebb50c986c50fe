"""The `mtpd` entry points (mtpd/cli.py): cheap local steps, one-line errors, `python -m mtpd`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mtpd.layout import Layout, metrics_path
from tests.helpers import one_line_error, run_mtpd

HEAVY = ("torch", "mmengine", "mmdet", "mmcv")


def test_python_dash_m_mtpd():
    r = run_mtpd("--help")
    assert r.returncode == 0 and "bgs" in r.stdout and "tables" in r.stdout


def test_local_steps_do_not_import_torch(tmp_path):
    """`mtpd bgs ...` runs as a local rule many times a search: it must not pay for torch."""
    layout = Layout("e", "d", root=str(tmp_path))
    metrics = []
    for chain, ap in ((("t",), 1.0), (("a", "t"), 2.0)):
        p = tmp_path / metrics_path(layout.stage_model(0, "proxy", chain), "proxy")
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"split": "proxy", "AP": ap}))
        metrics.append(str(p))
    target = tmp_path / "target.json"
    target.write_text(json.dumps({"target": "t"}))
    code = ("import sys; from mtpd.cli import main; "
            f"rc = main(['bgs', 'round', '--round', '1', '--pool', 'a,t', '--previous', "
            f"'{target}', '--metrics', *{metrics!r}, '--proxy', 'box_ap', '--margin', '0', "
            "'--max-stages', '2', '--evaluation-split', 'val', '--control', 'none', "
            f"'--out', '{tmp_path}/r1.json']);"
            f" print(rc, sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split("\n")[-2] == "0 []", r.stdout + r.stderr
    assert json.loads((tmp_path / "r1.json").read_text())["chosen"] == "a"
    code = ("import sys; import mtpd.tables, mtpd.bgs_steps, mtpd.pipeline_config; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    r = run_mtpd("evaluate", "--config", "nope.py", "--checkpoint", "x.pth", "--dataset",
             str(tmp_path / "missing.json"), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "missing.json does not exist" in r.stderr and "Traceback" not in r.stderr
    r = run_mtpd("--debug", "evaluate", "--config", "nope.py", "--checkpoint", "x.pth",
             "--dataset", str(tmp_path / "missing.json"), "--out", str(tmp_path / "m.json"))
    assert r.returncode != 0 and "Traceback" in r.stderr
    assert not (tmp_path / "m.json").exists()


def test_results_directory_that_cannot_be_written(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        r = run_mtpd("record", "--out", str(ro / "results" / "x.json"), "--json", "{}")
        one_line_error(r, str(ro / "results"), "Read-only file system")
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
