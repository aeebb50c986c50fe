"""Never lose work, always say what is wrong: real kills, full disks, NaN losses, bad input and
hostile files. Every failure is one line that names the file, key or value and how to fix it;
what was already computed stays as it was."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import (REPO, one_line_error, random_checkpoint, run_mtpd, snakemake,
                           workdir)
from mtpd.checkpoint import load_checkpoint_file, save_model_checkpoint
from mtpd.data.manifest import DatasetManifest

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER = "mtpd::shapes/retinanet_r34w24_shapes.py"


# --- faults, with real processes and real kills -----------------------------------------------
@pytest.mark.slow
def test_stage_killed_at_a_random_point_resumes_through_snakemake(tmp_path):
    """SIGKILL (no chance to save) at a random moment of a training job run by Snakemake: the
    target is not written; Snakemake run again resumes from the last checkpoint and finishes."""
    wd = workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/tiny.yaml").read_text())
    cfg["compute"] = {"checkpoint_minutes": 0.002}
    (wd / "config/kill.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/tiny/seed0/baseline/e4/model.pth"
    work = wd / (target + ".work")
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", "1", "--configfile",
           "config/kill.yaml"]
    proc = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 900
    while not (work / "last_checkpoint").exists() and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 3.0))  # a random point after the first checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (wd / target).exists(), "the job finished before it could be killed"
    # a killed Snakemake leaves its lock: `--unlock`, then run again (README)
    subprocess.run(cmd + ["--unlock"], cwd=wd, capture_output=True, check=True)
    r = subprocess.run(cmd + ["--rerun-incomplete"], cwd=wd, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = load_checkpoint_file(wd / target)["meta"]["mtpd"]
    assert meta["resumed"] and meta["stage_epochs"] == 4
    assert "resuming from" in (wd / target).with_name("train.log").read_text()
    assert not list((wd / "results").rglob("*.tmp"))


@pytest.mark.parametrize("command", ["evaluate", "tables"])
def test_killed_while_writing_leaves_previous_outputs_intact(tmp_path, shapes_data, command):
    """Outputs are written atomically: a job killed at any moment leaves the previous file
    whole (old or new, never half-written)."""
    if command == "evaluate":
        ckpt = random_checkpoint(RETINA, shapes_data, tmp_path / "m.pth")
        out = tmp_path / "metrics_val.json"
        args = ["evaluate", "--config", RETINA, "--checkpoint", str(ckpt), "--dataset",
                str(shapes_data), "--split", "val", "--out", str(out), "--num-workers", "0"]
    else:
        out = tmp_path / "record.json"
        args = ["record", "--out", str(out), "--json", json.dumps({"x": list(range(20000))})]
    out.write_text('{"previous": true}\n')
    rng = random.Random(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "mtpd", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.kill()
        proc.wait()
        json.loads(out.read_text())  # always a whole JSON document
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.fixture()
def small_disk(tmp_path):
    """A 24 MB tmpfs: room for one resumable checkpoint of the small RetinaNet, not two."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(small_disk, shapes_data):
    out = small_disk / "model.pth"
    r = run_mtpd("train", "--config", RETINA, "--dataset", str(shapes_data), "--out", str(out),
             "--epochs", "2", "--batch-size", "8", "--num-workers", "0", "--seed", "0",
             "--checkpoint-minutes", "0.001")
    line = one_line_error(r, "could not save checkpoint", "the previous one is kept",
                          "free disk space")
    work = small_disk / "model.pth.work"
    kept = Path((work / "last_checkpoint").read_text().strip())
    assert kept.name in line and kept.is_file()
    assert "message_hub" in load_checkpoint_file(kept)  # usable for resuming
    assert not out.exists() and not list(work.glob(".*.tmp"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, shapes_data):
    """A diverging run stops at the first non-finite loss, naming the term and the iteration;
    no NaN weights are ever saved, and no target is written."""
    config = tmp_path / "diverge.py"
    config.write_text(f"_base_ = '{REPO}/mtpd/configs/shapes/retinanet_r18w16_shapes.py'\n"
                      "optim_wrapper = dict(optimizer=dict(lr=1e6), clip_grad=None)\n"
                      "param_scheduler = []\n")
    out = tmp_path / "model.pth"
    r = run_mtpd("train", "--config", str(config), "--dataset", str(shapes_data), "--out",
             str(out), "--epochs", "3", "--batch-size", "4", "--num-workers", "0", "--seed", "0",
             "--checkpoint-minutes", "0.0001")
    line = one_line_error(r, "loss term '", "at iteration", "last good checkpoint")
    assert any(v in line for v in ("is nan", "is inf", "is -inf"))
    assert not out.exists()
    work = tmp_path / "model.pth.work"
    if (work / "last_checkpoint").exists():  # diverged after at least one saved iteration
        sd = load_checkpoint_file((work / "last_checkpoint").read_text().strip())["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


# --- bad input: one line naming the problem; nothing touched ----------------------------------
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


def test_corrupt_json_manifest_and_annotations(tmp_path, shapes_data):
    bad = tmp_path / "dataset.json"
    bad.write_text('{"name": "x", "splits": ')
    r = run_mtpd("evaluate", "--config", RETINA, "--checkpoint", "x.pth", "--dataset", str(bad),
             "--out", str(tmp_path / "m.json"))
    one_line_error(r, "dataset.json is not valid JSON")
    manifest = json.loads(Path(shapes_data).read_text())
    root = Path(shapes_data).parent
    ann = tmp_path / "train.json"
    ann.write_text((root / "train.json").read_text()[:-200])
    manifest["data_root"] = str(root)
    manifest["splits"]["train"]["ann_file"] = str(ann)
    m = tmp_path / "m" / "dataset.json"
    m.parent.mkdir()
    m.write_text(json.dumps(manifest))
    r = run_mtpd("data", "check", "--dataset", str(m), "--out", str(tmp_path / "checked.json"))
    one_line_error(r, "train.json")
    assert not (tmp_path / "checked.json").exists()


def test_missing_image_and_bad_boxes_are_named(tmp_path, shapes_data):
    root = Path(shapes_data).parent
    coco = json.loads((root / "val.json").read_text())
    coco["annotations"][0]["bbox"] = [float("nan"), 1, 2, 3]
    coco["annotations"].append({**coco["annotations"][1], "id": 99999, "image_id": 424242})
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps(coco))
    manifest = {"name": "x", "data_root": str(root),
                "splits": {"val": {"ann_file": str(ann), "img_dir": str(root / "images/val")}}}
    m = tmp_path / "dataset.json"
    m.write_text(json.dumps(manifest))
    r = run_mtpd("data", "check", "--dataset", str(m), "--out", str(tmp_path / "checked.json"))
    line = one_line_error(r, "val.json", "424242", "dataset.drop_bad_boxes")
    assert "non-finite" in line or "nan" in line.lower()
    assert not (tmp_path / "checked.json").exists()


def test_teacher_of_another_architecture_or_classes(tmp_path, shapes_data):
    """A teacher checkpoint that does not fit its config: the message says which tensors and
    why (another number of classes, another architecture)."""
    other = random_checkpoint(TEACHER, shapes_data, tmp_path / "r34.pth")
    r = run_mtpd("evaluate", "--config", RETINA, "--checkpoint", str(other), "--dataset",
             str(shapes_data), "--split", "val", "--out", str(tmp_path / "m.json"))
    one_line_error(r, "r34.pth does not fit config", "give the config the checkpoint was")
    from mmdet.registry import MODELS

    from mtpd.model_config import build_job_config

    cfg = build_job_config(RETINA, DatasetManifest.load(shapes_data))
    cfg.model.bbox_head.num_classes = 80
    coco_head = tmp_path / "coco_head.pth"
    save_model_checkpoint(coco_head, MODELS.build(cfg.model).state_dict(), {})
    r = run_mtpd("train", "--config", RETINA, "--dataset", str(shapes_data), "--out",
             str(tmp_path / "s.pth"), "--epochs", "1", "--seed", "0", "--num-workers", "0",
             "--distill", json.dumps({"teacher_config": RETINA,
                                      "teacher_checkpoint": str(coco_head)}))
    one_line_error(r, "coco_head.pth does not fit", "another number of classes")
    assert not (tmp_path / "s.pth").exists()


def test_teacher_config_that_does_not_build(tmp_path, shapes_data):
    config = tmp_path / "broken.py"
    config.write_text(f"_base_ = '{REPO}/mtpd/configs/shapes/retinanet_r34w24_shapes.py'\n"
                      "model = dict(backbone=dict(type='NoSuchBackbone'))\n")
    ckpt = random_checkpoint(RETINA, shapes_data, tmp_path / "t.pth")
    r = run_mtpd("train", "--config", RETINA, "--dataset", str(shapes_data), "--out",
             str(tmp_path / "s.pth"), "--epochs", "1", "--seed", "0", "--num-workers", "0",
             "--distill", json.dumps({"teacher_config": str(config),
                                      "teacher_checkpoint": str(ckpt)}))
    one_line_error(r, "does not build", "NoSuchBackbone")


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


def test_missing_teacher_checkpoint_and_sha256_mismatch(tmp_path):
    r = run_mtpd("fetch", "--source", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "t.pth"))
    one_line_error(r, "nope.pth does not exist", "checkpoint.source")
    src = tmp_path / "zoo.pth"
    save_model_checkpoint(src, {"w": torch.ones(1)}, {})
    r = run_mtpd("fetch", "--source", str(src), "--sha256", "0" * 64, "--out",
             str(tmp_path / "t.pth"))
    one_line_error(r, "does not match the config's 0000")
    assert not (tmp_path / "t.pth").exists()


# --- security: no pickled code runs, no shell, no plain-http downloads ------------------------
class RunsCode:
    """Unpickling this would run a shell command (it never must)."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("entry", ["fetch", "teacher", "init", "evaluate", "resume"])
def test_crafted_checkpoint_runs_nothing_through_any_entry_point(tmp_path, shapes_data, entry):
    marker = tmp_path / "PWNED"
    RunsCode.marker = str(marker)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": RunsCode()}, evil)
    common = ["--config", RETINA, "--dataset", str(shapes_data), "--num-workers", "0"]
    train = ["train", *common, "--out", str(tmp_path / "s.pth"), "--epochs", "1", "--seed", "0"]
    if entry == "fetch":
        r = run_mtpd("fetch", "--source", str(evil), "--out", str(tmp_path / "t.pth"))
    elif entry == "teacher":
        r = run_mtpd(*train, "--distill", json.dumps({"teacher_config": RETINA,
                                                  "teacher_checkpoint": str(evil)}))
    elif entry == "init":
        r = run_mtpd(*train, "--init", str(evil))
    elif entry == "evaluate":
        r = run_mtpd("evaluate", *common, "--checkpoint", str(evil), "--split", "val", "--out",
                 str(tmp_path / "m.json"))
    else:  # a work directory whose last checkpoint was swapped for a hostile file
        work = tmp_path / "s.pth.work"
        work.mkdir()
        (work / "last_checkpoint").write_text(str(evil))
        r = run_mtpd(*train)
    assert r.returncode != 0
    assert "evil.pth" in r.stderr and ("refused" in r.stderr or "Weights only" in r.stderr)
    assert not marker.exists(), "a checkpoint ran code"


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
