"""Training-step cost of distillation vs the plain student, for every loss, measured in one run.

For one student/teacher pair on generated data, prints per loss (FeatureMSE = the paper's
simple loss, CWD, PKD, MGD, FGD): the distillation step time, its ratio to the plain student's
step, the floor 1 + teacher forward / student step that any feature distillation pays, the
ratio to that floor (goal: within 1.1x), and the peak memory (resident set of a process that
only builds the model and runs the steps; on a GPU, its peak allocated GPU memory). Medians over
--repeats; each configuration runs in its own process so memory peaks do not mix. A step is
MMEngine's `train_step` through the optimizer wrapper training uses, so `--precision bf16`
(or fp16 on a GPU) measures mixed precision as `mtpd train` runs it (`mtpd.precision`).
Checkpoint sizes are printed too. `--compare-precision bf16` instead prints the plain student's
and the simple loss's step time and peak memory in fp32 and in bf16, and their ratios.

    .venv/bin/python benchmarks/distill_step.py [--teacher mtpd::shapes/retinanet_r50w16_shapes.py]
    .venv/bin/python benchmarks/distill_step.py --compare-precision bf16
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
    """One configuration (a.loss, or the plain student when a.loss is 'none'), in a.precision
    on a.device: seconds per step and per teacher forward, peak memory."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner

    from mtpd import register_all_modules
    from mtpd.data.manifest import DatasetManifest
    from mtpd.distill import build_distiller_cfg
    from mtpd.model_config import build_job_config
    from mtpd.precision import DTYPES, MtpdAmpOptimWrapper

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
    model.to(a.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-5)
    dtype = DTYPES[a.precision]
    wrapper = MtpdAmpOptimWrapper(optimizer=opt, dtype=dtype) if dtype else OptimWrapper(opt)
    cuda = a.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def step() -> None:  # a training iteration: preprocessing, forward, backward, update
        model.train_step(batch, wrapper)
        sync()

    out = {"step": _time(step, a.repeats)}
    if a.loss != "none":
        inputs = model.data_preprocessor(batch, True)["inputs"]

        def teacher() -> None:
            with wrapper.optim_context(model):  # as inside a step: under its autocast
                model.teacher_features(inputs)
            sync()

        out["teacher_forward"] = _time(teacher, a.repeats)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["threads"] = torch.get_num_threads()
    return out


def prepare(tmp: Path, teacher: str, num_train: int = 64, num_val: int = 8) -> tuple[Path, Path]:
    """Generated data and a teacher checkpoint with random weights (a step costs the same
    whatever the weights); returns (manifest, teacher checkpoint)."""
    from mmdet.registry import MODELS

    from mtpd import register_all_modules
    from mtpd.checkpoint import save_model_checkpoint
    from mtpd.data.manifest import DatasetManifest
    from mtpd.data.shapes import ShapesSpec, generate
    from mtpd.model_config import build_job_config

    register_all_modules()
    data = generate(tmp / "data", ShapesSpec.from_settings(
        num_train=num_train, num_proxy=0, num_val=num_val)) / "dataset.json"
    model = MODELS.build(build_job_config(teacher, DatasetManifest.load(data)).model)
    model.init_weights()
    save_model_checkpoint(tmp / "teacher.pth", model.state_dict(), {})
    return data, tmp / "teacher.pth"


def measure_in_child(student: str, teacher: str, data: Path, teacher_ckpt: Path, loss: str, *,
                     batch_size: int, repeats: int, precision: str, device: str) -> dict:
    """`measure` of one configuration in a process of its own, so memory peaks do not mix."""
    child = [sys.executable, __file__, "--student", student, "--teacher", teacher,
             "--batch-size", str(batch_size), "--repeats", str(repeats), "--data", str(data),
             "--teacher-ckpt", str(teacher_ckpt), "--precision", precision, "--device", device,
             "--loss", loss]
    run = subprocess.run(child, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"{loss} in {precision} on {device} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _memory_key(device: str) -> str:
    """Peak allocated GPU memory on a GPU, else the process's peak resident set."""
    return "peak_cuda_mb" if device.startswith("cuda") else "peak_rss_mb"


def compare_precision(a: argparse.Namespace, data: Path, teacher_ckpt: Path) -> None:
    """The plain student and the simple loss in fp32 and in a.compare_precision."""
    other, memory = a.compare_precision, _memory_key(a.device)
    print(f"{'configuration':24s} {'fp32 ms':>8s} {other + ' ms':>8s} {'x':>5s} "
          f"{'fp32 MB':>8s} {other + ' MB':>8s} {'x':>5s}")
    for name, loss in (("plain student", "none"), ("FeatureMSE distillation", LOSSES[0])):
        r = {p: measure_in_child(a.student, a.teacher, data, teacher_ckpt, loss,
                                 batch_size=a.batch_size, repeats=a.repeats, precision=p,
                                 device=a.device) for p in ("fp32", other)}
        rows = [(name, "step", memory)] + ([("  its teacher forward", "teacher_forward", None)]
                                           if loss != "none" else [])
        for label, key, mem in rows:
            t32, t = r["fp32"][key] * 1000, r[other][key] * 1000
            line = f"{label:24s} {t32:8.1f} {t:8.1f} {t / t32:5.2f}"
            if mem:
                m32, m = r["fp32"][mem], r[other][mem]
                line += f" {m32:8.0f} {m:8.0f} {m / m32:5.2f}"
            print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default="mtpd::shapes/retinanet_r18w16_shapes.py")
    p.add_argument("--teacher", default="mtpd::shapes/retinanet_r50w16_shapes.py")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", help="cpu or cuda (default: cuda when there is one)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="of the per-loss table (fp16 needs a GPU)")
    p.add_argument("--compare-precision", choices=["fp16", "bf16"],
                   help="instead: fp32 against this, for the plain student and the simple loss")
    p.add_argument("--loss", help=argparse.SUPPRESS)  # one configuration, in a child process
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--teacher-ckpt", help=argparse.SUPPRESS)
    a = p.parse_args()
    import torch

    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if "fp16" in (a.precision, a.compare_precision) and not a.device.startswith("cuda"):
        p.error("fp16 needs a CUDA device (mtpd.precision); use bf16 on CPU")
    if a.loss:
        print(json.dumps(measure(a)))
        return

    from mtpd.devices import device_name
    from mtpd.train import train

    tmp = Path(tempfile.mkdtemp(prefix="mtpd-bench-"))
    data, teacher_ckpt = prepare(tmp, a.teacher)
    print(f"device: {device_name(a.device)}, student {a.student}, teacher {a.teacher}, batch "
          f"{a.batch_size}, median of {a.repeats}, precision {a.precision}")
    if a.compare_precision:
        compare_precision(a, data, teacher_ckpt)
        return
    results = {loss: measure_in_child(a.student, a.teacher, data, teacher_ckpt, loss,
                                      batch_size=a.batch_size, repeats=a.repeats,
                                      precision=a.precision, device=a.device)
               for loss in ["none"] + LOSSES}
    plain, memory = results.pop("none"), _memory_key(a.device)
    print(f"{'loss':16s} {'step ms':>8s} {'x student':>9s} {'floor':>6s} {'x floor':>8s} "
          f"{'peak MB':>8s}")
    print(f"{'(plain student)':16s} {plain['step'] * 1000:8.1f} {1:9.2f} {'':6s} {'':8s} "
          f"{plain[memory]:8.0f}")
    for loss, r in results.items():
        floor = 1 + r["teacher_forward"] / plain["step"]
        ratio = r["step"] / plain["step"]
        print(f"{loss:16s} {r['step'] * 1000:8.1f} {ratio:9.2f} {floor:6.2f} "
              f"{ratio / floor:8.2f} {r[memory]:8.0f}")

    out = tmp / "student.pth"
    train(a.student, data, out, epochs=1, seed=0, batch_size=a.batch_size, num_workers=0,
          distill={"teacher_config": a.teacher, "teacher_checkpoint": str(teacher_ckpt)},
          precision=a.precision)
    resume = next((out.parent / (out.name + ".work")).glob("epoch_*.pth"))
    print(f"exported student ckpt   {out.stat().st_size / 1e6:8.2f} MB")
    print(f"MMEngine resume ckpt    {resume.stat().st_size / 1e6:8.2f} MB (student + adapters "
          "+ optimizer state; never a DAG target)")
    print(f"teacher ckpt            {teacher_ckpt.stat().st_size / 1e6:8.2f} MB")


if __name__ == "__main__":
    main()
