"""Mixed precision on CPU (mtpd/precision.py): bf16 autocast through the same AMP wrapper a GPU
job uses. Resuming a bf16 run: tests/test_resume.py; the flag in the rules' command lines:
tests/test_workflow.py."""
from __future__ import annotations

import math

import pytest
import torch

from mtpd.checkpoint import load_checkpoint_file
from mtpd.train import work_dir_for
from tests.helpers import count_steps, random_teacher

STUDENT = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER = "mtpd::shapes/retinanet_r34w24_shapes.py"


def test_bf16_distillation_stage_exports_fp32_that_evaluates(tmp_path, shapes_data,
                                                               monkeypatch):
    """Teacher and student run under bf16 autocast, the distillation loss in fp32, every step
    goes through the AMP wrapper, and the exported student is fp32 and evaluates."""
    from mtpd.distill.model import StageDistiller
    from mtpd.evaluate import evaluate
    from mtpd.train import train

    seen: dict[str, list] = {"teacher": [], "distill": []}
    teacher_features = StageDistiller.teacher_features
    distill_loss = StageDistiller.distill_loss

    def watched_teacher(self, inputs):
        feats = teacher_features(self, inputs)
        seen["teacher"].append((torch.is_autocast_enabled("cpu"),
                                torch.get_autocast_dtype("cpu"), feats[0].dtype))
        return feats

    def watched_distill(self, *args, **kwargs):
        loss = distill_loss(self, *args, **kwargs)
        seen["distill"].append(loss.dtype)
        return loss

    monkeypatch.setattr(StageDistiller, "teacher_features", watched_teacher)
    monkeypatch.setattr(StageDistiller, "distill_loss", watched_distill)
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
