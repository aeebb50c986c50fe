"""The benchmark report's arithmetic on a results tree with planted metrics: the precondition,
paired differences to the best direct run, continued against restarted chains, the target
rules, BGS's rank with each proxy replayed, and Kendall's tau of each proxy against val."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mtpd.bench import collect, kendall_tau, report
from mtpd.layout import Layout, metrics_path
from mtpd.pipeline_config import complete

SEEDS = (0, 1, 2)
# val AP of each run in seed 0; seeds 1 and 2 add 0.5 and 1.0 to every student run, and the
# continued chain gains one more 0.1 per seed (so paired differences have a spread)
VAL = {("alone", 2): 8.0, ("alone", 4): 11.0,
       ("direct", "t1"): 13.0, ("direct", "t2"): 12.0,       # the final teacher t2 transfers worse
       ("t1",): 10.0, ("t2",): 9.0, ("t1", "t2"): 14.0, ("t2", "t1"): 12.5,
       ("continued", "t1", "t2"): 14.4}
# BGS's proxy chains (1-epoch proxy stages): box AP agrees with val on every pair but one (it
# ranks t2 -> t1 above t1 -> t2); the negated feature loss, within chains ending at the same
# teacher, agrees on both of its pairs
PROXY_AP = {("t1",): 3.0, ("t2",): 2.0, ("t1", "t2"): 5.0, ("t2", "t1"): 5.5}
FEATURE = {("t1",): -0.3, ("t2",): -0.9, ("t1", "t2"): -0.5, ("t2", "t1"): -0.2}


def _write(path: str, split: str, record: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"split": split, **record}))


@pytest.fixture()
def bench_tree(tmp_path) -> Path:
    config = complete({
        "experiment": "b", "dataset": {"kind": "shapes", "name": "d",
                                       "shapes": {"num_train": 80}},
        "student": {"name": "s", "config": "mtpd::shapes/retinanet_r18w8_shapes.py",
                    "epochs": 2},
        "teachers": {"t1": {"config": "a.py", "epochs": 6}, "t2": {"config": "b.py", "epochs": 6}},
        "distill": {"orders": [["t1", "t2"], ["t2", "t1"]], "continued_orders": [["t1", "t2"]],
                    "direct_epochs": [4]},
        "bgs": {"target": "proxy", "max_stages": 2, "exhaustive": True},
        "train": {"seeds": list(SEEDS)}})
    layout = Layout("b", "d", root=str(tmp_path))
    Path(layout.experiment_file()).parent.mkdir(parents=True)
    Path(layout.experiment_file()).write_text(json.dumps(config))
    for t, ap, proxy in (("t1", 20.0, 19.0), ("t2", 30.0, 29.0)):
        _write(metrics_path(layout.teacher_model(t), "val"), "val", {"AP": ap, "total_epochs": 6})
        _write(metrics_path(layout.teacher_model(t), "proxy"), "proxy", {"AP": proxy})
    for seed in SEEDS:
        shift = 0.5 * seed
        for key, ap in VAL.items():
            if key[0] == "alone":
                path, epochs = layout.baseline_model(seed, key[1]), key[1]
            elif key[0] == "direct":
                path, epochs = layout.direct_model(seed, key[1], 4), 4
            elif key[0] == "continued":
                path, epochs = layout.stage_model(seed, "continued", key[1:]), 4
                ap += 0.1 * seed
                _write(metrics_path(path, "proxy"), "proxy", {"AP": ap - 5})
            else:
                path, epochs = layout.stage_model(seed, "progressive", key), 2 * len(key)
                # the full schedule on the proxy split ranks exactly as val does
                _write(metrics_path(path, "proxy"), "proxy", {"AP": ap - 5})
            _write(metrics_path(path, "val"), "val", {"AP": ap + shift, "total_epochs": epochs})
        for chain, ap in PROXY_AP.items():
            rec = {"AP": ap, "neg_feature_loss": FEATURE[chain]}
            _write(metrics_path(layout.stage_model(seed, "proxy", chain), "proxy"), "proxy", rec)
        rounds = [{"round": 1, "order": ["t2"], "order_score": 2.0, "candidates": {"t1": 5.0},
                   "chosen": "t1", "new_order": ["t1", "t2"], "stop": False, "reason": ""},
                  {"round": 2, "order": ["t1", "t2"], "order_score": 5.0, "candidates": {},
                   "chosen": None, "new_order": ["t1", "t2"], "stop": True, "reason": ""}]
        Path(layout.bgs_file(seed, "result")).parent.mkdir(parents=True, exist_ok=True)
        Path(layout.bgs_file(seed, "result")).write_text(json.dumps(
            {"order": ["t1", "t2"], "rounds": rounds}))
    return Path(layout.experiment_dir())


def test_kendall_tau_counts_pairs_within_each_seed_only():
    same, reversed_ = ([1, 2, 3], [10, 20, 30]), ([1, 2, 3], [30, 20, 10])
    assert kendall_tau([same]) == (1.0, 3)
    assert kendall_tau([reversed_]) == (-1.0, 3)
    assert kendall_tau([same, reversed_]) == (0.0, 6)
    tau, pairs = kendall_tau([([1, 1, 2], [1, 2, 3])])  # a tie in x: tau-b below 1
    assert pairs == 3 and tau == pytest.approx(2 / math.sqrt(2 * 3))
    assert math.isnan(kendall_tau([([1], [2])])[0])


def test_report_figures(bench_tree):
    s = report(bench_tree)
    assert s["final_teacher"] == "t2" and s["best_other_direct_teacher"] == "t1"
    # direct from t2 is 1.0 below direct from t1 in every seed: sd 0, so it holds
    assert s["direct_final_minus_best_other"][0] == pytest.approx(-1.0)
    assert s["best_direct"] == "t1"
    # the continued chain is the best student: +1.4 + 0.1 * seed over direct t1 -> 1.5 +- 0.1
    assert s["best_student"] == "progressive, continued LR (ours) t1 -> t2"
    mean, sd = s["best_progressive_variant_minus_best_direct"]
    assert (mean, sd) == (pytest.approx(1.5), pytest.approx(0.1))
    assert s["best_paper_order_minus_best_direct"][0] == pytest.approx(1.0)
    assert s["mtpd"] == "MTPD (BGS): t1 -> t2"
    # chosen on the proxy split: the continued schedule (+0.4 to +0.6 there), and the target
    # rule whose BGS order scores better there in full: `best` picks t2, then BGS t1 -> t2
    # (9.0); `proxy` picks t1 (the better one-stage student), then t2 -> t1 (7.5)
    assert s["stage_schedule_chosen_on_proxy"] == "continue"
    assert s["target_rule_chosen_on_proxy"] == "best"
    # the short box AP misranks 1 of the 6 pairs of a seed's 4 chains, against the full
    # schedule on the proxy split as against val: tau (5 - 1) / 6; the others agree
    for reference in ("proxy_tau_full_schedule_proxy_split", "proxy_tau_val"):
        assert s[reference] == {"box_ap, 1 ep": pytest.approx(2 / 3),
                                "feature_loss, 1 ep": pytest.approx(1.0),
                                "box_ap, full schedule": pytest.approx(1.0)}
    # BGS as run chose t1 -> t2, the best order on val; the short box AP, replayed, picks the
    # target t1 (best one-stage chain), then prepends t2 (5.5 > 3.0): rank 2 of 4
    assert s["BGS as run (box_ap, 1 ep): mean rank"] == 1.0
    assert s["replayed: box_ap, 1 ep: mean rank"] == 2.0
    assert s["replayed: box_ap, full schedule: mean rank"] == 2.0
    assert s["warmup_share_of_a_stage"] == pytest.approx(25 / (10 * 2))
    text = (bench_tree / "report.md").read_text()
    assert "| t1 -> t2 | 4 | 14.50 +- 0.50 | 15.00 +- 0.60 | +0.50 +- 0.10 | +0.50 +- 0.10 |" \
        in text
    assert "**best**" in text and (bench_tree / "epochs.png").stat().st_size > 0


def test_the_report_rebuilds_from_the_collected_records(bench_tree, tmp_path):
    (bench_tree / "seed0" / "progressive" / "t1" / "model.pth").write_bytes(b"weights")
    n = collect(bench_tree, tmp_path / "copy")
    copy = tmp_path / "copy" / "b"
    assert n > 0 and not list(copy.rglob("*.pth"))
    assert report(copy) == report(bench_tree)


def test_a_full_proxy_schedule_is_read_from_the_chains_trained_in_full(bench_tree):
    """With `bgs.proxy_schedule: full`, BGS's orders are replayed from the chains trained in
    full, not from the short proxy stages, and the report says how BGS ran."""
    for seed in SEEDS:  # the short proxy now scores t1 -> t2 below t2 alone
        short = bench_tree / f"seed{seed}" / "proxy" / "t1" / "t2" / "metrics_proxy.json"
        short.write_text(json.dumps({"split": "proxy", "AP": 1.0, "neg_feature_loss": -0.5}))
    # short: `best` (target t2) stops at t2 alone (4.0 in full), `proxy` gets t2 -> t1 (7.5)
    assert report(bench_tree)["target_rule_chosen_on_proxy"] == "proxy"
    path = bench_tree / "experiment.json"
    config = json.loads(path.read_text())
    config["bgs"]["proxy_schedule"] = "full"
    path.write_text(json.dumps(config))
    s = report(bench_tree)
    assert s["target_rule_chosen_on_proxy"] == "best"  # t1 -> t2 scores 9.0 in full
    assert "BGS as run (box_ap, full schedule): mean rank" in s
