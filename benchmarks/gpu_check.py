"""One-GPU check of mtpd's training, evaluation and streaming speed, printed as one JSON object.

On the demo's pair (student: RetinaNet, quarter-width ResNet-18; teacher: quarter-width
ResNet-50) and data it generates (`mtpd.data.shapes`, `mtpd.data.sequences`):

* `train_step`: the plain student's step and a distillation step (the paper's simple loss) in
  fp32 and in each mixed precision (`amp`: fp16 and bf16 on a GPU, bf16 on CPU), each in its own
  process (`distill_step.py`): images/s, peak memory (GPU: `torch.cuda.max_memory_allocated`;
  CPU: the process's peak RSS), and the teacher forward's share of the distillation step;
* `stage`: a real distillation stage (`mtpd.train.train`) in fp32 and each amp: images/s over
  its training time (data loading and hooks included), peak GPU memory, checkpoint dtypes;
* `evaluate`: `mtpd.evaluate` of the first amp stage's student: images/s of inference (data
  loading included, COCO scoring not);
* `streaming`: latency per frame as `mtpd stream` measures it, at each of the schema's
  `streaming.scales` (of a student trained for a stage only: its many low-score boxes can make
  post-processing dearer than a converged model's);
* `two_process_stage`: the first amp stage as 2 processes (`mtpd train --nproc 2`), only on a
  machine with 2 GPUs (otherwise a note says why it was skipped).

Sized to finish in under 5 minutes on one GPU; `--device cpu` runs it small, to check the script.

    .venv/bin/python benchmarks/gpu_check.py [--out gpu_check.json]
    .venv/bin/python benchmarks/gpu_check.py --device cpu
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distill_step import LOSSES, measure_in_child, prepare

STUDENT = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER = "mtpd::shapes/retinanet_r50w16_shapes.py"
# Per device: generated images, batch, timed steps, epochs of a stage, val images, sequences.
SIZES = {"cuda": dict(num_train=512, batch_size=32, repeats=10, epochs=2, num_val=64,
                      sequences=dict(num_val=3, frames=30)),
         "cpu": dict(num_train=16, batch_size=4, repeats=2, epochs=1, num_val=4,
                     sequences=dict(num_val=1, frames=6))}


def train_steps(data: Path, teacher_ckpt: Path, size: dict, amps: list[str],
                device: str) -> dict[str, Any]:
    """Plain and distillation step per precision, and what mixed precision gains on each."""
    memory = "peak_cuda_mb" if device == "cuda" else "peak_rss_mb"
    out: dict[str, Any] = {"memory": "torch.cuda.max_memory_allocated" if device == "cuda"
                           else "peak RSS of the process"}
    for name, loss in (("student", "none"), ("distill", LOSSES[0])):
        for precision in ["fp32", *amps]:
            r = measure_in_child(STUDENT, TEACHER, data, teacher_ckpt, loss,
                                 batch_size=size["batch_size"], repeats=size["repeats"],
                                 precision=precision, device=device)
            fig = {"step_ms": round(r["step"] * 1000, 1),
                   "images_per_s": round(size["batch_size"] / r["step"], 1),
                   "peak_mb": round(r[memory])}
            if "teacher_forward" in r:
                fig["teacher_forward_share"] = round(r["teacher_forward"] / r["step"], 3)
            out[f"{name}_{precision}"] = fig
    for amp in amps:
        for name in ("student", "distill"):
            a, b = out[f"{name}_fp32"], out[f"{name}_{amp}"]
            out[f"{name}_{amp}_speedup"] = round(b["images_per_s"] / a["images_per_s"], 2)
            out[f"{name}_{amp}_memory_ratio"] = round(b["peak_mb"] / a["peak_mb"], 2)
    return out


def stage(data: Path, teacher_ckpt: Path, out: Path, size: dict, precision: str,
          num_workers: int | None) -> dict[str, Any]:
    """One distillation stage as the DAG trains it."""
    import torch

    from mtpd.checkpoint import load_checkpoint_file
    from mtpd.train import train

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train(STUDENT, data, out, epochs=size["epochs"], seed=0, batch_size=size["batch_size"],
          num_workers=num_workers, precision=precision,
          distill={"teacher_config": TEACHER, "teacher_checkpoint": str(teacher_ckpt)})
    return _stage_figures(out, size["num_train"]) | {
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20)
        if torch.cuda.is_available() else None,
        "checkpoint_dtypes": sorted({str(v.dtype) for v in
                                     load_checkpoint_file(out)["state_dict"].values()})}


def _stage_figures(out: Path, images: int) -> dict[str, Any]:
    from mtpd.checkpoint import load_checkpoint_file

    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    seconds = meta["train_seconds"]
    return {"precision": meta["precision"], "processes": meta["processes"],
            "total_batch": meta["total_batch"], "epochs": meta["stage_epochs"],
            "train_seconds": round(seconds, 2),
            "images_per_s": round(images * meta["stage_epochs"] / seconds, 1)}


def two_process_stage(data: Path, teacher_ckpt: Path, out: Path, size: dict,
                      precision: str) -> dict[str, Any]:
    """The stage as 2 processes, one per GPU, or why not."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus < 2:
        return {"skipped": f"needs 2 GPUs; this machine has {gpus}"}
    distill = json.dumps({"teacher_config": TEACHER, "teacher_checkpoint": str(teacher_ckpt)})
    cmd = [sys.executable, "-m", "mtpd", "train", "--config", STUDENT, "--dataset", str(data),
           "--out", str(out), "--epochs", str(size["epochs"]), "--batch-size",
           str(size["batch_size"]), "--precision", precision, "--distill", distill,
           "--nproc", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        return {"failed": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "?"}
    return _stage_figures(out, size["num_train"])


def streaming(ckpt: Path, tmp: Path, size: dict, device: str) -> dict[str, Any]:
    """Measured latency per frame at each scale of the schema's streaming.scales."""
    from mtpd.data.sequences import SequencesSpec, generate_sequences
    from mtpd.pipeline_config import default
    from mtpd.streaming import run_streaming

    manifest = generate_sequences(tmp / "sequences", SequencesSpec.from_settings(
        **size["sequences"])) / "dataset.json"
    out = {}
    for scale in default("streaming.scales"):
        rec = run_streaming(STUDENT, ckpt, manifest, "val", tmp / f"stream_{scale}.json",
                            scale=scale, device=device)
        out[str(scale)] = {"input_size": rec["input_size"], "frames": rec["frames"],
                           "latency_ms": rec["measured_runtime_ms"]}
    return out


def run(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mtpd.devices import device_name
    from mtpd.evaluate import evaluate

    start = time.perf_counter()
    device, size = a.device, SIZES[a.device]
    amps = ["fp16", "bf16"] if device == "cuda" and torch.cuda.is_bf16_supported() else \
        ["fp16"] if device == "cuda" else ["bf16"]
    tmp = Path(tempfile.mkdtemp(prefix="mtpd-gpu-check-"))
    data, teacher_ckpt = prepare(tmp, TEACHER, num_train=size["num_train"],
                                 num_val=size["num_val"])
    report: dict[str, Any] = {
        "device": device_name(device), "torch": torch.__version__,
        "gpus": torch.cuda.device_count(), "student": STUDENT, "teacher": TEACHER,
        "images": {"train": size["num_train"], "val": size["num_val"], "size_px": 128},
        "batch_size": size["batch_size"], "amp": amps}
    report["train_step"] = train_steps(data, teacher_ckpt, size, amps, device)
    workers = None if device == "cuda" else 0  # the config's own loaders on a GPU
    report["stage"] = {p: stage(data, teacher_ckpt, tmp / f"stage_{p}.pth", size, p, workers)
                       for p in ["fp32", *amps]}
    student = tmp / f"stage_{amps[0]}.pth"
    rec = evaluate(STUDENT, student, data, tmp / "metrics.json", split="val",
                   num_workers=workers)
    report["evaluate"] = {"images": size["num_val"], "AP": rec["AP"],
                          "images_per_s": round(1 / rec["seconds_per_image"], 1)}
    report["streaming"] = streaming(student, tmp, size, device)
    report["two_process_stage"] = two_process_stage(data, teacher_ckpt, tmp / "stage_2proc.pth",
                                                    size, amps[0])
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"],
                   help="default: cuda when there is a GPU; cpu runs small sizes in bf16")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    a = p.parse_args()
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch starts, here and in children
    import torch

    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device here; run with --device cpu")
    with contextlib.redirect_stdout(sys.stderr):  # MMEngine logs to stdout: keep it JSON only
        report = run(a)
    text = json.dumps(report, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
