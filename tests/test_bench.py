"""The benchmark report's arithmetic on a results tree with planted metrics: mean and sd over
seeds, MTPD against the best direct run, and BGS's rank for both readings (one replayed)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtpd.bench import report
from mtpd.layout import Layout, metrics_path
from mtpd.pipeline_config import complete

AP = {  # seed -> model -> val AP
    0: {("t1",): 10, ("t2",): 11, ("t1", "t2"): 15, ("t2", "t1"): 13,
        ("direct", "t1", 2): 9, ("direct", "t2", 2): 10.5,
        ("direct", "t1", 4): 12, ("direct", "t2", 4): 14,
        ("alone", 2): 8, ("alone", 4): 11, ("alone", 6): 12.5},
    1: {("t1",): 9, ("t2",): 12, ("t1", "t2"): 14, ("t2", "t1"): 14.5,
        ("direct", "t1", 2): 9.5, ("direct", "t2", 2): 11,
        ("direct", "t1", 4): 12.5, ("direct", "t2", 4): 13,
        ("alone", 2): 8.5, ("alone", 4): 12, ("alone", 6): 13.5},
}
# BGS ran with the equal-budget control; its proxy scores (target t2):
PROXY = {0: {"target": 5.0, "t1": 7.0, "control": 8.0},   # control bar 8 > 7: stop at [t2]
         1: {"target": 6.0, "t1": 9.0, "control": 8.0}}   # 9 > 8: prepend t1


def _write(path: str, record: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"split": "val", **record}))


@pytest.fixture()
def bench_tree(tmp_path) -> Path:
    config = complete({
        "experiment": "b", "dataset": {"kind": "shapes", "name": "d"},
        "student": {"name": "s", "config": "s.py", "epochs": 2},
        # teachers train longer (6 epochs) than the longest chain (4), as zoo teachers do
        "teachers": {"t1": {"config": "a.py", "epochs": 6}, "t2": {"config": "b.py", "epochs": 6}},
        "distill": {"orders": [["t1", "t2"], ["t2", "t1"]], "direct_epochs": [2, 4]},
        "bgs": {"target": "t2", "max_stages": 2, "control": "repeat_first", "exhaustive": True},
        "train": {"seeds": [0, 1]}})
    layout = Layout("b", "d", root=str(tmp_path))
    Path(layout.experiment_file()).parent.mkdir(parents=True)
    Path(layout.experiment_file()).write_text(json.dumps(config))
    for t, ap in (("t1", 20.0), ("t2", 22.0)):
        _write(metrics_path(layout.teacher_model(t), "val"), {"AP": ap, "total_epochs": 6})
    for seed, models in AP.items():
        for key, ap in models.items():
            if key[0] == "direct":
                path = layout.direct_model(seed, key[1], key[2])
                epochs = key[2]
            elif key[0] == "alone":
                path, epochs = layout.baseline_model(seed, key[1]), key[1]
            else:
                path, epochs = layout.stage_model(seed, "progressive", key), 2 * len(key)
            _write(metrics_path(path, "val"), {"AP": ap, "total_epochs": epochs})
        p = PROXY[seed]
        chosen = "t1" if p["t1"] > p["control"] else None
        rounds = [{"round": 1, "order": ["t2"], "order_score": p["target"],
                   "candidates": {"t1": p["t1"]}, "chosen": chosen,
                   "new_order": ["t1", "t2"] if chosen else ["t2"], "stop": not chosen,
                   "reason": "", "bar": p["control"], "control_score": p["control"]}]
        if chosen:
            rounds.append({"round": 2, "order": ["t1", "t2"], "order_score": p["t1"],
                           "candidates": {}, "chosen": None, "new_order": ["t1", "t2"],
                           "stop": True, "reason": "max_stages"})
        exhaustive = {"scores": [{"chain": ["t2"], "score": p["target"]},
                                 {"chain": ["t1", "t2"], "score": p["t1"]}]}
        Path(layout.bgs_file(seed, "result")).parent.mkdir(parents=True, exist_ok=True)
        Path(layout.bgs_file(seed, "result")).write_text(json.dumps(
            {"order": rounds[-1]["new_order"], "rounds": rounds, "exhaustive": exhaustive}))
    return Path(layout.experiment_dir())


def test_report_figures(bench_tree):
    s = report(bench_tree)
    # MTPD (BGS with control): seed 0 keeps [t2] (AP 11, 2 epochs: best direct there 10.5),
    # seed 1 takes [t1, t2] (AP 14, 4 epochs: best direct 13) -> differences 0.5 and 1.0
    assert s["mtpd_AP_mean"] == pytest.approx(12.5)
    assert s["mtpd_minus_best_direct_mean"] == pytest.approx(0.75)
    assert s["mtpd_minus_best_direct_in_paired_sd"] == pytest.approx(0.75 / (0.5 / 2 ** 0.5))
    # best full order t1 -> t2 (14.5) vs best direct at 4 epochs, t2 (13.5), both sd 0.707
    assert s["best_order"] == "t1 -> t2" and s["best_direct"] == "t2 (4 epochs)"
    assert s["best_order_minus_best_direct_in_pooled_sd"] == pytest.approx(1.0 / 0.5 ** 0.5)
    # teachers against the student alone at their own 6 epochs (mean 13.0)
    assert s["teacher_minus_student_alone_at_equal_epochs"] == {"t1": 7.0, "t2": 9.0}
    # the paper's reading (no control, replayed from the proxy scores) picks t1 -> t2 in both
    # seeds: the best of all orders in seed 0, second in seed 1; the control's picks rank 3, 2
    assert s["bgs_none_picks_exhaustive_best"] == 1
    assert s["bgs_repeat_first_picks_exhaustive_best"] == 0
    assert s["bgs_repeat_first_mean_rank"] == pytest.approx(2.5)
    assert s["bgs_none_mean_rank"] == pytest.approx(1.5)
    text = (bench_tree / "report.md").read_text()
    assert "| progressive | t1 -> t2 | 4 | 14.50 | 0.71 | 2 |" in text
    assert (bench_tree / "report.csv").is_file() and (bench_tree / "report_seeds.csv").is_file()
