"""Mixed precision on CPU (bf16 autocast) through the same AMP wrapper a GPU job uses."""
from __future__ import annotations

import math
import signal

import pytest
import torch
import yaml

from tests.helpers import count_steps, random_teacher, snakemake, workdir
from mtpd.checkpoint import load_checkpoint_file
from mtpd.train import work_dir_for

STUDENT = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER = "mtpd::shapes/retinanet_r34w24_shapes.py"


def test_bf16_distillation_stage_exports_fp32_that_evaluates(tmp_path, shapes_data,
                                                               monkeypatch):
    """Teacher and student run under bf16 autocast, the distillation loss in fp32, every step
    goes through the AMP wrapper, and the exported student is fp32 and evaluates."""
    from mtpd.distill.model import ProgressiveDistiller
    from mtpd.evaluate import evaluate
    from mtpd.train import train

    seen: dict[str, list] = {"teacher": [], "distill": []}
    teacher_features = ProgressiveDistiller.teacher_features
    distill_loss = ProgressiveDistiller.distill_loss

    def watched_teacher(self, inputs):
        feats = teacher_features(self, inputs)
        seen["teacher"].append((torch.is_autocast_enabled("cpu"),
                                torch.get_autocast_dtype("cpu"), feats[0].dtype))
        return feats

    def watched_distill(self, *args, **kwargs):
        loss = distill_loss(self, *args, **kwargs)
        seen["distill"].append(loss.dtype)
        return loss

    monkeypatch.setattr(ProgressiveDistiller, "teacher_features", watched_teacher)
    monkeypatch.setattr(ProgressiveDistiller, "distill_loss", watched_distill)
    steps: list[float] = []
    count_steps(monkeypatch, steps)
    out = tmp_path / "stage.pth"
    train(STUDENT, shapes_data, out, epochs=1, batch_size=8, num_workers=0, seed=0,
          distill={"teacher_config": TEACHER,
                   "teacher_checkpoint": random_teacher(tmp_path, shapes_data)},
          feature_loss_split="proxy", precision="bf16")

    assert len(steps) == 5 and all(math.isfinite(v) for v in steps)  # 40 images, batch 8
    train_calls = seen["teacher"][:5]  # then the feature proxy's, outside training
    assert train_calls == [(True, torch.bfloat16, torch.bfloat16)] * 5
    assert set(seen["distill"]) == {torch.float32}
    ckpt = load_checkpoint_file(out)
    meta = ckpt["meta"]["mtpd"]
    assert meta["precision"] == "bf16" and math.isfinite(meta["feature_loss"])
    assert {v.dtype for v in ckpt["state_dict"].values()} == {torch.float32, torch.int64}
    assert "MtpdAmpOptimWrapper" not in ckpt["meta"]["config_text"]  # plain MMDetection's
    resume = load_checkpoint_file(work_dir_for(out) / "epoch_1.pth")
    assert resume["optimizer"]["loss_scaler"] == {}  # bf16: no loss scaling
    rec = evaluate(STUDENT, out, shapes_data, tmp_path / "m.json", split="val", num_workers=0)
    assert 0 <= rec["AP"] <= 100


def test_interrupted_bf16_run_resumes_with_the_amp_wrapper(tmp_path, shapes_data,
                                                            monkeypatch):
    """SIGTERM mid-epoch saves the AMP wrapper's state; the next run resumes after the batches
    done, still in bf16, and finishes the epoch."""
    from mtpd.errors import TrainingInterrupted
    from mtpd.train import train

    out = tmp_path / "student.pth"
    args = dict(epochs=1, batch_size=8, num_workers=0, seed=0, precision="bf16")
    handler = signal.getsignal(signal.SIGTERM)
    try:
        steps: list[float] = []
        count_steps(monkeypatch, steps, stop_at=3)
        with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM at iteration 3"):
            train(STUDENT, shapes_data, out, **args)
        saved = load_checkpoint_file(work_dir_for(out) / "iter_3.pth")
        assert "loss_scaler" in saved["optimizer"] and saved["meta"]["mtpd_iter_in_epoch"] == 3
        train(STUDENT, shapes_data, out, **args)
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert len(steps) == 5  # 3, then batches 4 and 5 of 5
    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    assert meta["resumed"] and meta["precision"] == "bf16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only without CUDA")
def test_fp16_on_cpu_is_refused_in_one_line(tmp_path, shapes_data, capsys):
    from mtpd.cli import main

    code = main(["train", "--config", STUDENT, "--dataset", str(shapes_data), "--out",
                 str(tmp_path / "s.pth"), "--precision", "fp16", "--num-workers", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "fp16 needs a CUDA GPU" in err and "bf16" in err and "--precision" in err
    assert not (tmp_path / "s.pth").exists()


def test_precision_names_agree():
    """The schema, the command line and the code list the same precisions; fp32 by default."""
    from mtpd.cli import build_parser
    from mtpd.pipeline_config import default, schema
    from mtpd.precision import DTYPES

    assert schema()["properties"]["train"]["properties"]["precision"]["enum"] == list(DTYPES)
    assert default("train.precision") == "fp32"
    train = ["train", "--config", STUDENT, "--dataset", "d.json", "--out", "o.pth"]
    for name in DTYPES:
        assert build_parser().parse_args(train + ["--precision", name]).precision == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(train + ["--precision", "fp64"])


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
