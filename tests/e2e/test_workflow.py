"""The whole tiny DAG run for real (`snakemake --cores 2`, the session's tiny_run fixture): what
it leaves in results/, a forced stage re-running only its descendants, and a second
experiment sharing results/."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import job_stats, snakemake


def _digests(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


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
    assert jobs.get("evaluate_student") == 6  # on val, and on the proxy split (exhaustive)
    for rule in ("train_teacher", "train_baseline", "distill_direct", "pretrain_backbone",
                 "make_shapes_data"):
        assert rule not in jobs, jobs


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
