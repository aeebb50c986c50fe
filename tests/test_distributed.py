"""Multi-process stages (mtpd/distributed.py): DDP on CPU with gloo, what a multi-GPU SLURM job
runs; the processes started for a job do not assign devices again."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from mtpd.checkpoint import load_checkpoint_file
from mtpd.data.manifest import DatasetManifest
from mtpd.distributed import per_process
from tests.helpers import random_teacher

STUDENT = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER = "mtpd::shapes/retinanet_r34w24_shapes.py"


def test_two_process_distillation_stage_and_evaluation(tmp_path, shapes_data):
    """`--nproc 2` runs the stage as two gloo processes: the frozen teacher stays outside DDP,
    the levels the stage skips do not trip DDP's unused-parameter check, the LR follows the
    total batch, and the result is the same kind of checkpoint and metrics as one process."""
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    manifest = DatasetManifest.load(shapes_data)
    distill = json.dumps({"teacher_config": TEACHER,
                          "teacher_checkpoint": random_teacher(tmp_path, manifest)})
    out = tmp_path / "stage.pth"
    r = subprocess.run([sys.executable, "-m", "mtpd", "train", "--config", STUDENT,
                        "--dataset", str(shapes_data), "--out", str(out), "--epochs", "1",
                        "--batch-size", "8", "--num-workers", "0", "--seed", "0",
                        "--distill", distill, "--nproc", "2"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    ckpt = load_checkpoint_file(out)
    meta = ckpt["meta"]["mtpd"]
    assert meta["processes"] == 2 and meta["total_batch"] == 16
    assert meta["lr"] == 1e-3 * 16 / 8  # AdamW 1e-3 for a batch of 8, scaled linearly
    assert not any(k.startswith(("teacher", "adapters", "losses", "module.")) for k in
                   ckpt["state_dict"])
    model = init_detector(Config.fromstring(ckpt["meta"]["config_text"], ".py"), str(out),
                          device="cpu")
    image = next(manifest.split("val").img_dir.glob("*.png"))
    assert inference_detector(model, str(image)).pred_instances.bboxes.shape[1] == 4

    # one CPU process, and a job given 2 GPUs on a machine of its own (mtpd.devices claims
    # them from MTPD_GPUS; on this CPU machine the 2 processes use gloo)
    env = {**os.environ, "MTPD_GPUS": "0,1", "MTPD_GPU_LOCKS": str(tmp_path / "locks")}
    env.pop("SLURM_JOB_ID", None)
    metrics = {}
    for flag, n in (("--nproc", "1"), ("--gpus", "2")):
        path = tmp_path / f"metrics_{n}.json"
        r = subprocess.run([sys.executable, "-m", "mtpd", "evaluate", "--config", STUDENT,
                            "--checkpoint", str(out), "--dataset", str(shapes_data),
                            "--split", "val", "--out", str(path), "--num-workers", "0",
                            flag, n], capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr[-4000:]
        metrics[n] = json.loads(path.read_text())
    assert ("devices: CUDA_VISIBLE_DEVICES=0,1 (claimed from MTPD_GPUS=0,1, locks in "
            f"{tmp_path / 'locks'}) -> 2 processes (gloo)") in r.stderr
    one, two = metrics["1"], metrics["2"]
    assert set(one) == set(two) and two["processes"] == 2
    for key in ("AP", "AP50", "AP75", "num_detections"):
        assert one[key] == two[key], key  # the two shares together are the whole split


def test_processes_started_for_a_job_do_not_assign_devices_again():
    argv = ["train", "--config", "c.py", "--gpus", "2", "--nproc=3", "--out", "m.pth"]
    assert per_process(argv) == ["train", "--config", "c.py", "--out", "m.pth"]
