"""Training-step cost of distillation vs the plain student, measured in one run.

Prints, for one student/teacher pair on the generated data: the plain student's step time, the
distillation step time, the teacher's forward time, their ratio and the floor
1 + teacher_forward / student_step that any distillation must pay; plus checkpoint sizes
(the exported student vs MMEngine's resume checkpoint of the same run).

    .venv/bin/python benchmarks/distill_step.py [--teacher mtpd::shapes/retinanet_r50w16_shapes.py]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default="mtpd::shapes/retinanet_r18w16_shapes.py")
    p.add_argument("--teacher", default="mtpd::shapes/retinanet_r50w16_shapes.py")
    p.add_argument("--loss", default="FeatureMSELoss")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()

    from mmdet.registry import MODELS
    from mmengine.runner import Runner

    from mtpd.checkpoint import save_model_checkpoint
    from mtpd import register_all_modules
    from mtpd.data.manifest import DatasetManifest
    from mtpd.data.shapes import ShapesSpec, generate
    from mtpd.distill import build_distiller_cfg
    from mtpd.model_config import build_job_config
    from mtpd.train import train

    register_all_modules()
    tmp = Path(tempfile.mkdtemp(prefix="mtpd-bench-"))
    spec = ShapesSpec.from_settings(num_train=64, num_proxy=0, num_val=8)
    data = generate(tmp / "data", spec) / "dataset.json"
    manifest = DatasetManifest.load(data)
    cfg = build_job_config(a.student, manifest, work_dir=tmp / "w", num_workers=0,
                           batch_size=a.batch_size)
    tcfg = build_job_config(a.teacher, manifest, work_dir=tmp / "w")
    teacher = MODELS.build(tcfg.model)
    teacher.init_weights()
    save_model_checkpoint(tmp / "teacher.pth", teacher.state_dict(), {})
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))

    student = MODELS.build(cfg.model)
    student.init_weights()
    distiller = MODELS.build(build_distiller_cfg(
        cfg, {"teacher_config": a.teacher, "teacher_checkpoint": str(tmp / "teacher.pth"),
              "loss": {"type": a.loss}}, len(manifest.classes)))
    distiller.init_weights()

    def step(model):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)

        def run():
            data = model.data_preprocessor(batch, True)
            losses = model(**data, mode="loss")
            total = sum(v.sum() for k, vs in losses.items() if "loss" in k
                        for v in (vs if isinstance(vs, list) else [vs]))
            opt.zero_grad()
            total.backward()
            opt.step()
        return run

    student.train()
    distiller.train()
    t_student = _time(step(student), a.repeats)
    t_distill = _time(step(distiller), a.repeats)
    inputs = distiller.data_preprocessor(batch, True)["inputs"]
    t_teacher = _time(lambda: distiller.teacher_features(inputs), a.repeats)

    out = tmp / "student.pth"
    train(a.student, data, out, epochs=1, seed=0, batch_size=a.batch_size, num_workers=0,
          distill={"teacher_config": a.teacher, "teacher_checkpoint": str(tmp / "teacher.pth")})
    resume = next((out.parent / (out.name + ".work")).glob("epoch_*.pth"))
    print(f"device: cpu ({torch.get_num_threads()} threads), batch {a.batch_size}, "
          f"median of {a.repeats}")
    print(f"student step            {t_student * 1000:8.1f} ms")
    print(f"distillation step       {t_distill * 1000:8.1f} ms  ({a.loss}, teacher {a.teacher})")
    print(f"teacher forward         {t_teacher * 1000:8.1f} ms")
    print(f"ratio distill / student {t_distill / t_student:8.2f}")
    print(f"floor 1 + teacher/step  {1 + t_teacher / t_student:8.2f}")
    print(f"exported student ckpt   {out.stat().st_size / 1e6:8.2f} MB")
    print(f"MMEngine resume ckpt    {resume.stat().st_size / 1e6:8.2f} MB (student + adapters "
          "+ optimizer state; never a DAG target)")
    print(f"teacher ckpt            {(tmp / 'teacher.pth').stat().st_size / 1e6:8.2f} MB")


if __name__ == "__main__":
    main()
