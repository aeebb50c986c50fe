"""The experiment plan (mtpd/plan.py): which targets a config asks for and each job's
arguments, without Snakemake. The workflow's rules are adapters over these functions."""
from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml

from mtpd.layout import describe
from mtpd.pipeline_config import complete as complete_config
from mtpd.pipeline_config import load
from mtpd.plan import Plan, alternation, flags, json_arg

REPO = Path(__file__).resolve().parent.parent
TINY = load(REPO / "config" / "tiny.yaml")


def plan(**changes) -> Plan:
    """The tiny config's plan, with top-level blocks updated key by key."""
    config = copy.deepcopy(TINY)
    for block, values in changes.items():
        config[block].update(values)
    return Plan(config)


def runs(paths: list[str]) -> set[str]:
    """Model paths (or their metrics or records) as `seed/run` strings, to compare plans."""
    out = set()
    for p in paths:
        m = describe(p)
        if m.method == "teacher":
            out.add(f"teacher/{m.teacher}")
        elif m.method == "baseline":
            out.add(f"{m.seed}/baseline/e{m.epochs}")
        elif m.method == "direct":
            out.add(f"{m.seed}/direct/{m.teacher}/e{m.epochs}")
        else:
            out.add(f"{m.seed}/{m.method}/{'/'.join(m.chain)}")
    return out


def test_before_bgs_the_plan_holds_what_is_known():
    """BGS on: the fixed order's stages and baselines are planned, no MTPD order, no direct
    run (its budget is the MTPD order's length), no export; BGS's result files are."""
    p = plan()
    known = p.outputs(chosen=None)
    assert runs([m for m in known["metrics"] if m.endswith("metrics_val.json")]) == {
        "teacher/t_r34_a", "teacher/t_r34_b", "teacher/t_r18",
        "0/baseline/e1", "0/baseline/e2",
        "0/progressive/t_r34_a", "0/progressive/t_r34_a/t_r34_b"}
    assert known["bgs"] == ["results/tiny/seed0/bgs/result.json"]
    assert known["exports"] == []
    streams = [m for m in known["metrics"] if "/stream_" in m]
    assert runs(streams) == {"0/baseline/e1"} and len(streams) == 2  # two scales, no MTPD yet
    assert "results/tiny/cost.json" in known["metrics"]


def test_bgs_choice_adds_its_chain_its_budget_and_direct_runs():
    p = plan()
    asked = []

    def chosen(seed):
        asked.append(seed)
        return ["t_r18", "t_r34_a", "t_r34_b"]

    out = p.outputs(chosen=chosen)
    assert asked == [0]
    models = runs([m for m in out["metrics"] if m.endswith("metrics_val.json")])
    assert {"0/progressive/t_r18", "0/progressive/t_r18/t_r34_a",
            "0/progressive/t_r18/t_r34_a/t_r34_b", "0/baseline/e3"} <= models
    # direct distillation at the MTPD order's total epochs, from every teacher of distill.direct
    assert {m for m in models if "/direct/" in m} == {
        "0/direct/t_r34_a/e3", "0/direct/t_r34_b/e3", "0/direct/t_r18/e3"}
    assert out["exports"] == ["results/tiny/seed0/progressive/t_r18/t_r34_a/t_r34_b/model.onnx"]
    assert runs([m for m in out["metrics"] if "/stream_" in m]) == {
        "0/baseline/e1", "0/progressive/t_r18/t_r34_a/t_r34_b"}


def test_without_bgs_the_first_fixed_order_is_mtpd_and_bgs_is_never_asked():
    p = plan(bgs={"enabled": False}, distill={"direct_epochs": [4]})

    def never(seed):
        raise AssertionError("BGS is off")

    assert p.outputs(chosen=never) == p.outputs(chosen=None)
    out = p.outputs(chosen=None)
    assert out["bgs"] == []
    models = runs([m for m in out["metrics"] if m.endswith("metrics_val.json")])
    assert {m for m in models if "/direct/" in m} == {
        "0/direct/t_r34_a/e4", "0/direct/t_r34_b/e4", "0/direct/t_r18/e4"}
    assert "0/baseline/e4" in models  # every budget has its student-alone control


def test_training_arguments_of_each_run():
    p = plan(train={"batch_size": 3, "num_workers": 2, "precision": "bf16"})
    teacher = p.train_job("teacher", {"teacher": "t_r34_b"})
    assert teacher == {"config": "mtpd::shapes/retinanet_r34w24_shapes.py", "epochs": 2,
                       "seed": 0, "distill": "", "checkpoint_minutes": 15,
                       "options": "--num-workers 2 --precision bf16"}  # no student batch size
    baseline = p.train_job("baseline", {"seed": "1", "epochs": "4"})
    assert (baseline["epochs"], baseline["seed"]) == ("4", "1")
    assert baseline["options"] == "--batch-size 3 --num-workers 2 --precision bf16"
    proxy = p.train_job("stage", {"seed": "0", "schedule": "proxy", "chain": "t_r18/t_r34_b"})
    assert proxy["epochs"] == 1
    assert proxy["options"].endswith("--feature-loss-split proxy")
    settings = json.loads(shlex.split(proxy["distill"])[1])
    assert settings["teacher_checkpoint"] == "results/teachers/shapes-tiny/t_r34_b/model.pth"
    full = p.train_job("stage", {"seed": "0", "schedule": "progressive", "chain": "t_r18"})
    assert full["epochs"] == 1 and "--feature-loss-split" not in full["options"]
    direct = p.train_job("direct", {"seed": "0", "teacher": "t_r18", "epochs": "3"})
    assert "results/teachers/shapes-tiny/t_r18/model.pth" in direct["distill"]
    with pytest.raises(ValueError, match="no training run 'x'"):
        p.train_job("x", {"seed": "0"})


def test_fp32_jobs_keep_their_command_lines():
    assert plan().train_job("baseline", {"seed": "0", "epochs": "1"})["options"] == \
        "--num-workers 0"


def test_a_stage_starts_from_the_previous_stage_or_the_pretrained_backbone():
    p = plan()
    first = p.stage_start("0", "proxy", "t_r18")
    assert first == {"backbone": ["results/pretrained/shapes-tiny/r18w16/backbone.pth"]}
    assert p.start_flag(first) == \
        "--pretrained-backbone results/pretrained/shapes-tiny/r18w16/backbone.pth"
    second = p.stage_start("0", "proxy", "t_r18/t_r34_a")
    assert second == {"init": "results/tiny/seed0/proxy/t_r18/model.pth"}
    assert p.start_flag(second) == "--init results/tiny/seed0/proxy/t_r18/model.pth"
    assert p.start_flag({"backbone": []}) == ""
    assert p.stage_teacher("t_r18/t_r34_a") == "t_r34_a"


def test_carved_proxy_split_is_what_proxy_stages_train_beside():
    """COCO-format data without a proxy split: proxy stages train on what is left of train."""
    config = load(REPO / "config" / "coco_retinanet.yaml")
    p = Plan(config)
    assert p.carves_proxy
    options = p.stage_options("proxy", "retina_r101")
    assert options.endswith("--feature-loss-split proxy --split proxy_train")
    assert p.manifest_to_check("coco") == p.layout.carved_manifest()
    assert p.manifest_to_check("other") == "results/data/other/dataset.json"
    assert p.carve_train_flag() == "--train-images 30000"
    assert p.fetched == ["retina_r101", "retina_x101-64x4d"]
    assert set(p.trained) == {"retina_swin-t", "retina_swin-s"}


def test_fetched_teachers_are_checked_against_their_zoo_ap_on_coco_only():
    p = Plan(load(REPO / "config" / "coco_retinanet.yaml"))
    assert p.teacher_check("retina_r101", "val") == "--expect-box-ap 38.5 --ap-tolerance 3.0"
    assert p.teacher_check("retina_r101", "proxy") == ""   # the zoo AP is on val2017
    assert p.teacher_check("retina_swin-t", "val") == ""   # trained here: nothing to check
    assert p.teacher_spec("retina_r101")["sha256"] == "7a93545f"
    assert p.fetch_checks("retina_r101") == "--sha256 7a93545f"


def test_resources_name_gpus_and_cpus_the_way_the_slurm_plugin_reads_them():
    p = plan(compute={"gpu_model": "a100", "slurm_partition": "gpu"})
    train = p.resources("train")
    assert train["gpu"] == 1 and train["cpus_per_gpu"] == 4 and train["gpu_model"] == "a100"
    assert train["slurm_partition"] == "gpu" and "slurm_account" not in train
    p.config["compute"]["evaluate"]["gpus"] = 0
    cpu = p.resources("evaluate")
    assert cpu["gpu"] == 0 and cpu["cpus_per_task"] == 4
    assert "gpu_model" not in cpu and "cpus_per_gpu" not in cpu


def test_bgs_reads_the_chains_of_each_round():
    p = plan()
    first = p.bgs_round_metrics(0, 1, ["t_r34_b"])
    assert runs(first) == {"0/proxy/t_r34_b", "0/proxy/t_r34_a/t_r34_b",
                           "0/proxy/t_r18/t_r34_b"}  # the target alone, then each candidate
    assert all(m.endswith("metrics_proxy.json") for m in first)
    second = p.bgs_round_metrics(0, 2, ["t_r18", "t_r34_b"])
    assert runs(second) == {"0/proxy/t_r34_a/t_r18/t_r34_b"}
    assert p.bgs_previous_state(0, 1).endswith("bgs/target.json")
    assert p.bgs_previous_state(0, 3).endswith("bgs/round_2.json")
    assert len(p.bgs_exhaustive_metrics(0, "t_r34_b")) == 5
    assert p.bgs_exhaustive(0) == ["results/tiny/seed0/bgs/exhaustive.json"]
    assert p.bgs_target_metrics(0) == []  # a fixed target reads nothing
    best = plan(bgs={"target": "best"})
    assert runs(best.bgs_target_metrics(0)) == {"teacher/t_r34_a", "teacher/t_r34_b",
                                                "teacher/t_r18"}
    by_student = plan(bgs={"target": "proxy"})  # how well a student learns from each
    assert runs(by_student.bgs_target_metrics(1)) == {"1/proxy/t_r34_a", "1/proxy/t_r34_b",
                                                      "1/proxy/t_r18"}


def test_streaming_names_each_model_and_its_network():
    p = plan()
    student = "results/tiny/seed0/progressive/t_r34_a/t_r34_b/model.pth"
    assert p.stream_settings(student) == {
        "config": "mtpd::shapes/retinanet_r18w16_shapes.py",
        "name": "retina_r18w16 MTPD t_r34_a -> t_r34_b (seed 0)", "classes": "dataset",
        "network": "retinanet_r18w16_shapes"}
    teacher = p.stream_settings("results/teachers/shapes-tiny/t_r34_a/model.pth")
    assert teacher["name"] == "t_r34_a" and teacher["network"] == "retinanet_r34w24_shapes"
    # t_r18 shares the student's config: it is the student's network, timed once
    assert p.stream_settings("results/teachers/shapes-tiny/t_r18/model.pth")["network"] == \
        "retinanet_r18w16_shapes"
    assert p.stream_latency_args(student) == \
        "--latency results/tiny/cost.json --network retinanet_r18w16_shapes"
    assert p.stream_inputs(student)["cost"] == "results/tiny/cost.json"
    assert p.stream_record(student, 0.5).endswith(
        "t_r34_b/stream_shapes-tiny-sequences_val_s0.5.json")
    assert p.stream_record_log(student, "{scale}").endswith(
        "t_r34_b/stream_shapes-tiny-sequences_val_s{scale}.log")
    fixed = plan(streaming={"latency": 0.03})
    assert fixed.stream_latency_args(student) == "--latency 0.03"
    assert "cost" not in fixed.stream_inputs(student)


def test_cost_job_times_each_network_once():
    p = plan()
    inputs = p.cost_inputs()
    assert inputs["models"] == ["results/tiny/seed0/baseline/e1/model.pth",
                                "results/teachers/shapes-tiny/t_r34_a/model.pth"]
    args = p.cost_args()
    networks = json.loads(shlex.split(args)[1])["networks"]
    assert [n["members"] for n in networks] == [["student", "teacher:t_r18"],
                                                ["teacher:t_r34_a", "teacher:t_r34_b"]]
    assert "--scales 0.5,1.0" in args and "--rounds 5 --images 10 --warmup 3" in args


def test_definitions_of_shared_targets_are_checked_per_dataset_kind():
    checks = {what: (path, want) for path, want, what in plan().definition_checks()}
    path, want = checks["dataset 'shapes-tiny'"]
    assert path == "results/data/shapes-tiny/spec.json"
    assert want["shapes"] == ["disk", "square", "triangle"]
    assert "sequence dataset 'shapes-tiny-sequences'" in checks
    assert checks["teacher 't_r18'"][1] == {"config": "mtpd::shapes/retinanet_r18w16_shapes.py",
                                            "epochs": 2, "seed": 0, "backbone": "r18w16"}
    coco = {what for _, _, what in Plan(load(REPO / "config" / "coco_retinanet.yaml"))
            .definition_checks()}
    assert any(w.startswith("the proxy split of dataset 'coco'") for w in coco)
    argoverse = Plan(load(REPO / "config" / "argoverse_retinanet.yaml"))
    assert argoverse.input_size_flag().startswith("--input-size ")
    assert any("source" in want for _, want, _ in argoverse.definition_checks())


def test_command_line_text_is_stable():
    """The same settings give the same text whatever their order (Snakemake re-runs a job
    whose params text changed)."""
    assert json_arg({"b": 1, "a": [2]}) == json_arg({"a": [2], "b": 1}) == \
        "'{\"a\": [2], \"b\": 1}'"
    assert flags({"num_val": 2, "frames": 10}) == "--frames 10 --num-val 2"
    assert plan().shapes_args().startswith("--image-size 128 --max-objects 4")
    assert alternation(["a", "b"]) == "a|b"
    assert alternation([]) == "(?!x)x"


def complete(**changes) -> Plan:
    """The tiny config with top-level blocks updated, completed again (derived values)."""
    raw = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    for block, values in changes.items():
        raw.setdefault(block, {}).update(values)
    return Plan(complete_config(raw))


def test_continued_orders_train_their_part_of_one_schedule():
    """`continued/` chains: stage i of n gets `--continue-schedule i/n`, n the longest continued
    chain; the paper's `progressive/` stages and BGS's proxy stages keep their own schedules."""
    p = complete(distill={"continued_orders": [["t_r34_a", "t_r34_b"]]})
    assert p.config["distill"]["continued_stages"] == 2
    students = runs(p.student_models(0, None))
    assert {"0/continued/t_r34_a", "0/continued/t_r34_a/t_r34_b"} <= students
    first = p.train_job("stage", {"seed": "0", "schedule": "continued", "chain": "t_r34_a"})
    second = p.train_job("stage", {"seed": "0", "schedule": "continued",
                                   "chain": "t_r34_a/t_r34_b"})
    assert "--continue-schedule 1/2" in first["options"] and first["epochs"] == 1
    assert "--continue-schedule 2/2" in second["options"]
    assert p.stage_start(0, "continued", "t_r34_a/t_r34_b") == {
        "init": "results/tiny/seed0/continued/t_r34_a/model.pth"}
    restarted = p.train_job("stage", {"seed": "0", "schedule": "progressive",
                                      "chain": "t_r34_a/t_r34_b"})
    proxy = p.train_job("stage", {"seed": "0", "schedule": "proxy", "chain": "t_r34_a"})
    assert "--continue-schedule" not in restarted["options"] + proxy["options"]


def test_mtpd_chain_continues_its_schedule_when_asked():
    """`stage_schedule: continue`: MTPD's chain (and its streams, exports, BGS's proxy stages)
    lives under `continued/`, its schedule spanning bgs.max_stages stages."""
    p = complete(distill={"stage_schedule": "continue"}, bgs={"max_stages": 3},
                 evaluation={"export": True})
    assert p.config["distill"]["continued_stages"] == 3
    out = p.outputs(lambda seed: ["t_r18", "t_r34_b"])
    metrics = [m for m in out["metrics"] if m.endswith("metrics_val.json")]
    assert {"0/continued/t_r18", "0/continued/t_r18/t_r34_b"} <= runs(metrics)
    assert out["exports"] == ["results/tiny/seed0/continued/t_r18/t_r34_b/model.onnx"]
    proxy = p.train_job("stage", {"seed": "0", "schedule": "proxy", "chain": "t_r18/t_r34_b"})
    assert "--continue-schedule 2/3" in proxy["options"]


def test_teacher_snapshots_are_teachers_fetched_from_their_parents_training():
    p = complete(teachers={"t_r34_a": {"config": "mtpd::shapes/retinanet_r34w24_shapes.py",
                                       "backbone": "r34w24", "epochs": 3, "snapshots": [1, 2]}},
                 bgs={"pool": ["t_r34_a_e1", "t_r34_a"]})
    snap = p.teachers["t_r34_a_e1"]
    assert snap["snapshot_of"] == "t_r34_a" and "t_r34_a_e1" in p.fetched
    assert snap["checkpoint"]["source"] == "results/teachers/shapes-tiny/t_r34_a/snapshot_e1.pth"
    assert p.fetch_inputs("t_r34_a_e1") == ["results/teachers/shapes-tiny/t_r34_a/model.pth"]
    assert p.fetch_inputs("t_r34_a") == []
    assert p.fetch_checks("t_r34_a_e1") == ""  # made here: no hash to check, no empty flag
    job = p.train_job("teacher", {"teacher": "t_r34_a"})
    assert job["options"].endswith(
        "--snapshot 1:results/teachers/shapes-tiny/t_r34_a/snapshot_e1.pth "
        "--snapshot 2:results/teachers/shapes-tiny/t_r34_a/snapshot_e2.pth")
    assert "--snapshot" not in p.train_job("teacher", {"teacher": "t_r34_b"})["options"]
    # experiment.json holds the completed config; completing it again changes nothing
    assert complete_config(copy.deepcopy(p.config)) == p.config


@pytest.mark.parametrize("teacher, problem", [
    ({"epochs": 3, "snapshots": [3]}, "epoch 3 is not before the end of its training"),
    ({"checkpoint": {"source": "x.pth"}, "snapshots": [1]}, "epochs: none"),
])
def test_a_snapshot_must_be_an_epoch_of_a_teacher_trained_here(teacher, problem):
    from mtpd.errors import PipelineConfigError

    with pytest.raises(PipelineConfigError, match=problem):
        complete(teachers={"t_r34_a": {"config": "mtpd::shapes/retinanet_r34w24_shapes.py",
                                       **teacher}})


def test_exhaustive_bgs_also_scores_every_full_chain_on_the_proxy_split():
    """So the benchmark can check the proxy against val (mtpd.bench): full chains only."""
    p = plan(bgs={"exhaustive": True})
    proxy = [m for m in p.outputs(lambda s: ["t_r34_b"])["metrics"]
             if m.endswith("metrics_proxy.json")]
    assert runs(proxy) == {"0/progressive/t_r34_a", "0/progressive/t_r34_a/t_r34_b",
                           "0/progressive/t_r34_b", "teacher/t_r34_a", "teacher/t_r34_b",
                           "teacher/t_r18"}


def test_a_full_proxy_schedule_scores_the_chains_mtpd_trains():
    """`bgs.proxy_schedule: full`: BGS reads the full chains' proxy-split AP (in MTPD's stage
    schedule), and the exhaustive mode still trains the short proxy on every order, to check
    it against the full schedule."""
    p = plan(bgs={"proxy_schedule": "full", "target": "proxy", "exhaustive": False})
    assert runs(p.bgs_round_metrics(0, 2, ["t_r18", "t_r34_b"])) == {
        "0/progressive/t_r34_a/t_r18/t_r34_b"}
    assert runs(p.bgs_target_metrics(0)) == {"0/progressive/t_r34_a", "0/progressive/t_r34_b",
                                             "0/progressive/t_r18"}
    continued = plan(bgs={"proxy_schedule": "full"}, distill={"stage_schedule": "continue"})
    assert runs(continued.bgs_exhaustive_metrics(0, "t_r18")) >= {"0/continued/t_r34_a/t_r18"}
    assert not [m for m in p.outputs(lambda s: ["t_r34_b"])["metrics"] if "/proxy/" in m]
    exhaustive = plan(bgs={"proxy_schedule": "full", "exhaustive": True})
    short = runs(m for m in exhaustive.outputs(lambda s: ["t_r34_b"])["metrics"]
                 if "/proxy/" in m)
    assert len(short) == 15 and "0/proxy/t_r34_b/t_r18" in short  # all orders, up to 3
