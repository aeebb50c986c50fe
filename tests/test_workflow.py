"""The Snakemake workflow (workflow/) planned, not run: dry runs of the shipped configs, bad
configs refused before anything runs, and the command lines the rules give their jobs. Real
runs of the DAG: tests/e2e/."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import snakemake, workdir


# --- the plan ---------------------------------------------------------------------------------
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


def test_direct_distillation_from_a_zoo_teacher_is_planned(tmp_path):
    """A fetched (zoo) teacher is distilled directly as a trained one is: a paper config with
    fixed orders plans `distill_direct` from it (its rule once inherited the trained teachers'
    wildcard constraint, and this run had no rule)."""
    wd = workdir(tmp_path)
    config = yaml.safe_load((wd / "config" / "coco_retinanet.yaml").read_text())
    config["bgs"] = {"enabled": False}
    config["distill"]["direct"] = ["retina_r101", "retina_swin-t"]
    (wd / "config" / "fixed.yaml").write_text(yaml.safe_dump(config))
    r = snakemake(wd, "-n", "-p", "--configfile", "config/fixed.yaml", timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    trains = [line for line in r.stdout.splitlines()
              if line.startswith("Shell command: mtpd train")]
    for teacher in ("retina_r101", "retina_swin-t"):
        assert any(f"seed0/direct/{teacher}/e24/model.pth" in t for t in trains), teacher


def test_benchmark_plans_teacher_snapshots_and_continued_chains(tmp_path):
    """config/bench.yaml: the final teacher's training also writes its epoch-6 weights, which
    the snapshot teacher is fetched from; a continued chain's stages run as parts 1 and 2 of one
    schedule, the paper's chains without."""
    wd = workdir(tmp_path)
    r = snakemake(wd, "-n", "-p", "--configfile", "config/bench.yaml", timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    shells = [line for line in r.stdout.splitlines() if line.startswith("Shell command:")]
    teacher = "results/teachers/bench-shapes/retina_r34w24_192"
    assert any(f"--out {teacher}/model.pth" in s and f"--snapshot 6:{teacher}/snapshot_e6.pth"
               in s for s in shells)
    fetch = [s.split() for s in shells if s.startswith("Shell command: mtpd fetch")]
    assert fetch == [f"Shell command: mtpd fetch --source {teacher}/snapshot_e6.pth "
                     f"--out {teacher}_e6/model.pth > {teacher}_e6/fetch.log 2>&1".split()]
    trains = {re.search(r"--out (\S+)", s)[1]: s for s in shells
              if s.startswith("Shell command: mtpd train")}
    assert "--continue-schedule 1/2" in trains[
        "results/bench/seed0/continued/retina_r18w16/model.pth"]
    assert "--continue-schedule 2/2" in trains[
        "results/bench/seed0/continued/retina_r18w16/retina_r34w24_192/model.pth"]
    assert not any("--continue-schedule" in s for out, s in trains.items()
                   if "continued/" not in out)


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


# --- bad configs and names: refused before anything runs, nothing touched ---------------------
def _bad_config(tmp_path: Path, edit) -> tuple[Path, subprocess.CompletedProcess]:
    wd = workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/tiny.yaml").read_text())
    edit(cfg)
    (wd / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    return wd, snakemake(wd, "-n", "--configfile", "config/bad.yaml", timeout=300)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["student"].update(epoch=3), "student: unknown key 'epoch'"),
    (lambda c: c["student"].update(epochs="many"), "student.epochs: 'many' is not of type"),
    (lambda c: c["distill"].update(orders=[["t_r34_a", "nobody"]]),
     "distill.orders[0]: unknown teacher 'nobody'"),
    (lambda c: c.update(teachers={}), "teachers: {} should be non-empty"),
    (lambda c: c["bgs"].update(pool=[]), "bgs.pool"),
    (lambda c: c["bgs"].update(proxy_split="val"), "bgs.proxy_split: 'val' is an evaluation"),
    (lambda c: c["teachers"].update({"t;rm -rf x": c["teachers"]["t_r18"]}),
     "is not a valid name"),
    (lambda c: c["teachers"]["t_r18"].update(config="a.py; touch /tmp/pwned"),
     "contains a character that is not allowed"),
])
def test_bad_config_is_refused_before_anything_runs(tmp_path, edit, message):
    wd, r = _bad_config(tmp_path, edit)
    assert r.returncode != 0 and message in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    assert not (wd / "results").exists()
    assert not Path("/tmp/pwned").exists()


def test_shell_metacharacters_in_paths_stay_quoted(tmp_path):
    """A path with spaces reaches every command quoted; metacharacters are refused by the
    schema (see test_bad_config_is_refused_before_anything_runs)."""
    wd = workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/tiny.yaml").read_text())
    cfg["dataset"] = {"kind": "coco", "name": "spaced",
                      "coco": {"data_root": str(tmp_path / "my data"),
                               "splits": {s: {"ann_file": f"{s} file.json", "img_dir": s}
                                          for s in ("train", "val", "proxy")}}}
    cfg["pretrain"], cfg["streaming"] = {}, {"enabled": False}
    cfg["student"].pop("backbone")
    for t in cfg["teachers"].values():
        t.pop("backbone")
    (wd / "config/spaced.yaml").write_text(yaml.safe_dump(cfg))
    r = snakemake(wd, "-n", "-p", "--configfile", "config/spaced.yaml", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"--data-root '{tmp_path}/my data'" in r.stdout
    assert "'--split=train:train file.json:train'" in r.stdout


# --- what the rules' commands say -------------------------------------------------------------
def test_direct_distillation_trains_at_the_students_batch_size(tmp_path):
    """train.batch_size is the student's, for every student run (direct ones too), never a
    teacher's."""
    wd = workdir(tmp_path)
    cfg = (wd / "config/config.yaml").read_text().replace("num_workers: 1",
                                                         "num_workers: 1\n  batch_size: 3")
    (wd / "config/bs.yaml").write_text(cfg)
    r = snakemake(wd, "-n", "-p", "--configfile", "config/bs.yaml", "--forceall",
                  "results/demo/seed0/direct/retina_r50w16/e16/model.pth",
                  "results/teachers/shapes/retina_r50w16/model.pth",
                  "results/demo/seed0/baseline/e8/model.pth", timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    commands = [line[line.index("mtpd train"):] for line in (r.stdout + r.stderr).splitlines()
                if "mtpd train" in line]
    by_out = {re.search(r"--out (\S+)", c).group(1): c for c in commands}
    assert "--batch-size 3" in by_out["results/demo/seed0/direct/retina_r50w16/e16/model.pth"]
    assert "--batch-size 3" in by_out["results/demo/seed0/baseline/e8/model.pth"]
    assert "--batch-size" not in by_out["results/teachers/shapes/retina_r50w16/model.pth"]


def test_every_training_job_gets_the_flag_only_when_not_fp32(tmp_path):
    """Teachers, baselines and stages: `--precision bf16` when set, and fp32 command lines
    unchanged (so Snakemake does not rerun results made before the setting existed)."""
    wd = workdir(tmp_path)
    (wd / "config" / "bf16.yaml").write_text(yaml.safe_dump({"train": {"precision": "bf16"}}))
    for extra, flag in (([], False), (["config/bf16.yaml"], True)):
        r = snakemake(wd, "-n", "-p", "--configfile", "config/tiny.yaml", *extra)
        assert r.returncode == 0, r.stderr[-3000:]
        trains = [line for line in r.stdout.splitlines() if "mtpd train" in line]
        assert len(trains) > 3 and "--distill" in " ".join(trains)
        assert all(("--precision bf16" in t) == flag for t in trains), trains
        assert "--precision" not in r.stdout.replace("--precision bf16", "")
