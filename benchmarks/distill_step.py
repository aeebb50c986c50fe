"""Training-step cost of distillation vs the plain student, for every loss, measured in one run.

For one student/teacher pair on generated data, prints per loss (FeatureMSE = the paper's
simple loss, CWD, PKD, MGD, FGD): the distillation step time, its ratio to the plain student's
step, the floor 1 + teacher forward / student step that any feature distillation pays, the
ratio to that floor (goal: within 1.1x), and the peak memory (resident set of a process that
only builds the model and runs the steps). Medians over --repeats; each configuration runs in
its own process so memory peaks do not mix. Checkpoint sizes are printed too.

    .venv/bin/python benchmarks/distill_step.py [--teacher mtpd::shapes/retinanet_r50w16_shapes.py]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOSSES = ["FeatureMSELoss", "CWDLoss", "PKDLoss", "MGDLoss", "FGDLoss"]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(a: argparse.Namespace) -> dict:
    """One configuration (a.loss, or the plain student when a.loss is 'none')."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.runner import Runner

    from mtpd import register_all_modules
    from mtpd.data.manifest import DatasetManifest
    from mtpd.distill import build_distiller_cfg
    from mtpd.model_config import build_job_config

    register_all_modules()
    manifest = DatasetManifest.load(a.data)
    cfg = build_job_config(a.student, manifest, num_workers=0, batch_size=a.batch_size)
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    if a.loss == "none":
        model = MODELS.build(cfg.model)
    else:
        model = MODELS.build(build_distiller_cfg(
            cfg, {"teacher_config": a.teacher, "teacher_checkpoint": a.teacher_ckpt,
                  "loss": {"type": a.loss}}, len(manifest.classes)))
    model.init_weights()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-5)

    def step():
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode="loss")
        total = sum(v.sum() for k, vs in losses.items() if "loss" in k
                    for v in (vs if isinstance(vs, list) else [vs]))
        opt.zero_grad()
        total.backward()
        opt.step()

    out = {"step": _time(step, a.repeats)}
    if a.loss != "none":
        inputs = model.data_preprocessor(batch, True)["inputs"]
        out["teacher_forward"] = _time(lambda: model.teacher_features(inputs), a.repeats)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["threads"] = torch.get_num_threads()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default="mtpd::shapes/retinanet_r18w16_shapes.py")
    p.add_argument("--teacher", default="mtpd::shapes/retinanet_r50w16_shapes.py")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--loss", help=argparse.SUPPRESS)  # one configuration, in a child process
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--teacher-ckpt", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.loss:
        print(json.dumps(measure(a)))
        return

    from mmdet.registry import MODELS

    from mtpd import register_all_modules
    from mtpd.checkpoint import save_model_checkpoint
    from mtpd.data.manifest import DatasetManifest
    from mtpd.data.shapes import ShapesSpec, generate
    from mtpd.devices import device_name
    from mtpd.model_config import build_job_config
    from mtpd.train import train

    register_all_modules()
    tmp = Path(tempfile.mkdtemp(prefix="mtpd-bench-"))
    data = generate(tmp / "data", ShapesSpec.from_settings(num_train=64, num_proxy=0,
                                                           num_val=8)) / "dataset.json"
    manifest = DatasetManifest.load(data)
    teacher = MODELS.build(build_job_config(a.teacher, manifest).model)
    teacher.init_weights()
    save_model_checkpoint(tmp / "teacher.pth", teacher.state_dict(), {})
    child = [sys.executable, __file__, "--student", a.student, "--teacher", a.teacher,
             "--batch-size", str(a.batch_size), "--repeats", str(a.repeats), "--data",
             str(data), "--teacher-ckpt", str(tmp / "teacher.pth")]
    results = {loss: json.loads(subprocess.run(child + ["--loss", loss], check=True,
                                               capture_output=True, text=True).stdout
                                .strip().splitlines()[-1])
               for loss in ["none"] + LOSSES}
    plain = results.pop("none")
    print(f"device: {device_name()}, student {a.student}, teacher {a.teacher}, batch "
          f"{a.batch_size}, median of {a.repeats}")
    print(f"{'loss':16s} {'step ms':>8s} {'x student':>9s} {'floor':>6s} {'x floor':>8s} "
          f"{'peak MB':>8s}")
    print(f"{'(plain student)':16s} {plain['step'] * 1000:8.1f} {1:9.2f} {'':6s} {'':8s} "
          f"{plain['peak_rss_mb']:8.0f}")
    for loss, r in results.items():
        floor = 1 + r["teacher_forward"] / plain["step"]
        ratio = r["step"] / plain["step"]
        print(f"{loss:16s} {r['step'] * 1000:8.1f} {ratio:9.2f} {floor:6.2f} "
              f"{ratio / floor:8.2f} {r['peak_rss_mb']:8.0f}")

    out = tmp / "student.pth"
    train(a.student, data, out, epochs=1, seed=0, batch_size=a.batch_size, num_workers=0,
          distill={"teacher_config": a.teacher, "teacher_checkpoint": str(tmp / "teacher.pth")})
    resume = next((out.parent / (out.name + ".work")).glob("epoch_*.pth"))
    print(f"exported student ckpt   {out.stat().st_size / 1e6:8.2f} MB")
    print(f"MMEngine resume ckpt    {resume.stat().st_size / 1e6:8.2f} MB (student + adapters "
          "+ optimizer state; never a DAG target)")
    print(f"teacher ckpt            {(tmp / 'teacher.pth').stat().st_size / 1e6:8.2f} MB")


if __name__ == "__main__":
    main()
