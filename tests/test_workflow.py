"""The Snakemake DAG: dry runs of the shipped configs and a real end-to-end tiny run."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import job_stats, snakemake, user_env, workdir


def _digests(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("config", ["config/config.yaml", "config/tiny.yaml"])
def test_dry_run_shows_whole_plan(tmp_path, config):
    """Everything up to BGS is planned; BGS's checkpoints then add the chosen chain's jobs."""
    wd = workdir(tmp_path)
    r = snakemake(wd, "-n", "--configfile", config)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    rules = ["make_shapes_data", "pretrain_backbone", "train_teacher", "evaluate_teacher",
             "bgs_target", "bgs_round", "bgs_result", "tables", "describe_experiment",
             "record_teacher_spec"]
    if "tiny" in config:  # it also lists a fixed order, planned before BGS
        rules += ["distill_stage", "train_baseline", "evaluate_student"]
    for rule in rules:
        assert rule in out, f"{rule} missing from the plan of {config}:\n{out}"


def test_invalid_config_is_refused_with_key(tmp_path):
    wd = workdir(tmp_path)
    cfg = (wd / "config" / "tiny.yaml").read_text().replace("epochs: 2", "epochs: -2", 1)
    (wd / "config" / "bad.yaml").write_text(cfg)
    r = snakemake(wd, "-n", "--configfile", "config/bad.yaml")
    assert r.returncode != 0
    assert "teachers.t_r34_b.epochs: -2 is less than the minimum of 1" in r.stderr + r.stdout
    (wd / "config" / "bad.yaml").write_text(
        (wd / "config" / "tiny.yaml").read_text().replace("target: t_r34_b", "target: t_r34_b\n"
                                                          "  proxy_split: val"))
    r = snakemake(wd, "-n", "--configfile", "config/bad.yaml")
    assert r.returncode != 0
    assert "bgs.proxy_split: 'val' is an evaluation split" in r.stderr + r.stdout


@pytest.mark.slow
def test_tiny_end_to_end(tiny_run):
    res = tiny_run / "results"
    exp = res / "tiny" / "seed0"
    result = json.loads((exp / "bgs/result.json").read_text())
    order = result["order"]
    # margin -1000 accepts every candidate: target t_r34_b, then two more teachers (max 3)
    assert order[-1] == "t_r34_b" and len(order) == 3 and sorted(order) == sorted(
        ["t_r18", "t_r34_a", "t_r34_b"])
    # prefix reuse: rounds trained t_r34_b, [c, t_r34_b] for 2 candidates, and one 3-chain
    # whose first stage was already trained in round 1 -> 7 stage trainings instead of 8
    assert result["cost"]["bgs_stage_trainings_with_reuse"] == 7
    assert result["cost"]["bgs_stage_trainings_without_reuse"] == 8
    # exhaustive mode adds the other 3-chain: 9 distinct stages (11 without reuse), each
    # trained exactly once on disk although BGS and exhaustive search share most of them
    assert result["cost"]["exhaustive_stage_trainings_with_reuse"] == 9
    assert result["cost"]["exhaustive_stage_trainings_without_reuse"] == 11
    proxy_models = sorted(p.relative_to(exp / "proxy").parent.as_posix()
                          for p in (exp / "proxy").rglob("model.pth"))
    assert len(proxy_models) == 9, proxy_models
    ranked = pd.read_csv(res / "tiny/tables/bgs_exhaustive.csv")
    assert len(ranked) == 5 and ranked["bgs_order"].sum() == 1
    # proxy models are scored on the proxy split only
    for p in (exp / "proxy").rglob("metrics_*.json"):
        assert p.name == "metrics_proxy.json"
    # shared files live outside the experiment, named by the dataset
    for t in ("t_r18", "t_r34_a", "t_r34_b"):
        assert (res / "teachers/shapes-tiny" / t / "model.pth").is_file()
        assert (res / "teachers/shapes-tiny" / t / "train.log").is_file()

    table = pd.read_csv(res / "tiny/tables/main.csv")
    methods = table["method"].tolist()
    assert methods.count("teacher") == 3 and methods.count("direct") == 3
    assert methods.count("MTPD (BGS)") == 1
    mtpd = table[table["method"] == "MTPD (BGS)"].iloc[0]
    assert mtpd["teachers"] == " -> ".join(order) and mtpd["epochs"] == 3
    assert set(table[table["method"] == "student alone"]["epochs"]) == {1, 2, 3}
    assert table["AP"].between(0, 100).all()
    log = pd.read_csv(res / "tiny/tables/bgs_log.csv")
    assert list(log["round"]) == [0, 1, 1, 2] and log["chosen"].sum() == 3
    for f in ("main.md", "main.tex", "bgs_cost.csv", "runs.csv"):
        assert (res / "tiny/tables" / f).stat().st_size > 0
    for f in ("stages.png", "bgs.png"):
        assert (res / "tiny/plots" / f).read_bytes()[:4] == b"\x89PNG"
    # streaming AP of the MTPD student and the student alone at both scales, the best one
    # reported; one network, so both stream with its one timing (the cost job's)
    stream = pd.read_csv(res / "tiny/tables/streaming.csv")
    assert len(stream) == 2 and stream["best_scale"].isin([0.5, 1.0]).all()
    assert stream[["sAP@0.5", "sAP@1.0"]].notna().all(axis=None)
    assert set(stream["latency_of"]) == {"retinanet_r18w16_shapes"}
    assert (stream["runtime_mean_ms"] > 0).all() and stream["device"].str.startswith("cpu: ").all()
    records = [json.loads(p.read_text()) for p in exp.rglob("stream_*_s0.5.json")]
    assert len(records) == 2 and records[0]["runtime_ms"] == records[1]["runtime_ms"]
    # cost columns: one figure per network, shared by its checkpoints (t_r18 is the student's
    # architecture; t_r34_a and t_r34_b share theirs)
    cost = json.loads((res / "tiny/cost.json").read_text())
    assert list(cost["networks"]) == ["retinanet_r18w16_shapes", "retinanet_r34w24_shapes"]
    by_model = table.groupby("model")["latency_ms"].unique()
    student_ms = cost["networks"]["retinanet_r18w16_shapes"]["inputs"]["eval"]["latency_ms"]
    assert list(by_model["retina_r18w16"]) == list(by_model["t_r18"]) == [student_ms["median"]]
    assert list(by_model["t_r34_a"]) == list(by_model["t_r34_b"])
    assert (table["params_M"] > 0).all() and (table["GFLOPs"] > 0).all()
    assert (table[table["model"] == "t_r34_b"]["GFLOPs"].iloc[0]
            > table[table["model"] == "retina_r18w16"]["GFLOPs"].iloc[0])
    main_md = (res / "tiny/tables/main.md").read_text()
    assert re.search(r"MTPD student: [0-9.]+x the parameters, [0-9.]+x the GFLOPs and "
                     r"[0-9.]+x the latency of the target teacher t_r34_b at [-+][0-9.]+ AP",
                     main_md)
    assert len(pd.read_csv(res / "tiny/tables/cost.csv")) == 2 * 3  # networks x inputs
    assert (res / "tiny/plots/frontier.png").read_bytes()[:4] == b"\x89PNG"
    mtpd_dir = exp / "progressive" / "/".join(order)
    assert sorted(p.name for p in mtpd_dir.glob("stream_*.json")) == [
        "stream_shapes-tiny-sequences_val_s0.5.json",
        "stream_shapes-tiny-sequences_val_s1.0.json"]
    # evaluation.export: the MTPD student in ONNX, its parity record cited by the main table
    export = json.loads((mtpd_dir / "model.onnx.json").read_text())
    assert (mtpd_dir / "model.onnx").is_file() and export["parity"]["AP_diff"] <= 0.1
    assert "ONNX export (seed0/progressive/" in main_md
    assert not list(res.rglob("*.tmp"))  # nothing half-written is left behind
    # every job left its log beside its output
    assert (exp / "progressive" / order[0] / "train.log").is_file()
    assert (exp / "progressive" / order[0] / "evaluate_val.log").is_file()


@pytest.mark.slow
def test_forcing_one_stage_reruns_only_its_descendants(tiny_run):
    order = json.loads((tiny_run / "results/tiny/seed0/bgs/result.json").read_text())["order"]
    first = f"results/tiny/seed0/progressive/{order[0]}/model.pth"
    r = snakemake(tiny_run, "-n", "--forcerun", first, "--configfile", "config/tiny.yaml")
    assert r.returncode == 0, r.stderr
    jobs = job_stats(r.stdout + r.stderr)
    assert jobs.get("distill_stage") == 3      # the 3 stages of the chain
    assert jobs.get("evaluate_student") == 3
    for rule in ("train_teacher", "train_baseline", "distill_direct", "pretrain_backbone",
                 "make_shapes_data"):
        assert rule not in jobs, jobs


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


@pytest.mark.slow
def test_two_experiments_share_results_without_touching_each_other(tiny_run):
    """A second experiment on the same dataset runs into the same results/: it reuses the
    dataset, backbones and the teacher they have in common, and leaves every file of the first
    experiment as it was. Redefining a shared teacher under the same name is refused."""
    res = tiny_run / "results"
    before = _digests(res)
    second = yaml.safe_load((tiny_run / "config/tiny.yaml").read_text())
    second["experiment"] = "tiny-fixed"
    second["teachers"] = {"t_r34_b": second["teachers"]["t_r34_b"]}
    second["distill"]["orders"] = [["t_r34_b"]]
    second["bgs"] = {"enabled": False}
    (tiny_run / "config/second.yaml").write_text(yaml.safe_dump(second))
    r = snakemake(tiny_run, "--configfile", "config/second.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    jobs = job_stats(r.stdout + r.stderr)
    for rule in ("make_shapes_data", "pretrain_backbone", "train_teacher", "evaluate_teacher"):
        assert rule not in jobs, jobs  # shared, already there
    assert jobs["distill_stage"] == 1 and jobs["train_baseline"] == 1
    after = _digests(res)
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(k.startswith("tiny-fixed/") for k in set(after) - set(before))
    assert (res / "tiny-fixed/tables/main.csv").is_file()

    second["experiment"] = "tiny-other"
    second["teachers"]["t_r34_b"]["epochs"] = 3
    (tiny_run / "config/clash.yaml").write_text(yaml.safe_dump(second))
    r = snakemake(tiny_run, "-n", "--configfile", "config/clash.yaml")
    assert r.returncode != 0
    assert ("teacher 't_r34_b' was already made under results/teachers/shapes-tiny/t_r34_b "
            "from another definition (epochs: 2 there, 3 here)") in r.stderr + r.stdout
    assert _digests(res) == after
